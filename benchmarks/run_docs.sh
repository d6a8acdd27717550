#!/usr/bin/env bash
# The runs behind docs/benchmarks.md, in the order they were made. Each waits until the 1-minute load
# average is at most 1.5 (the machine is shared; WAIT_LOAD, WAIT_TIMEOUT override) and records the load
# it measured under.
#   bash benchmarks/run_docs.sh [STEP...]
# steps: mel w2v2 backends-mel backends-w2v2 ref-mel ref-w2v2 ref-w2v2-onnx sweep sweep-threads2 load-zmq load-whip journal rtp
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT=runs/bench/docs
WAIT=(--wait-load "${WAIT_LOAD:-1.5}" --wait-timeout "${WAIT_TIMEOUT:-900}")
mkdir -p "$OUT"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(mel w2v2 backends-mel backends-w2v2 ref-mel ref-w2v2 ref-w2v2-onnx sweep sweep-threads2 load-zmq load-whip)
for step in "${steps[@]}"; do
  case "$step" in
    mel)  # torch, Mel-LCNN: layouts x threads, then two single-threaded workers
      $PY -m streamdet bench --model-only --arch mel_lcnn --batch-sizes 1,2,4,8,16,32 --threads 1,2 \
        --channels-last both "${WAIT[@]}" --out "$OUT/mel-torch.json"
      $PY -m streamdet bench --model-only --arch mel_lcnn --batch-sizes 1,2,4,8,16,32 --threads 1 --workers 2 \
        "${WAIT[@]}" --out "$OUT/mel-torch-workers.json" ;;
    w2v2)  # torch, W2V2-AASIST on a random XLS-R 300M-shaped five-layer front-end
      $PY -m streamdet bench --model-only --arch w2v2_aasist --batch-sizes 1,2,4,8 --threads 1,2 --repeats 3 \
        "${WAIT[@]}" --out "$OUT/w2v2-torch.json" ;;
    backends-mel)  # torch against ONNX Runtime, same random Mel-LCNN
      $PY benchmarks/model_backends.py --arch mel_lcnn --batch-sizes 1,2,4,8 --threads 1,2 \
        "${WAIT[@]}" --out "$OUT/mel-backends.json" ;;
    backends-w2v2)
      $PY benchmarks/model_backends.py --arch w2v2_aasist --batch-sizes 1,4,8 --threads 2 --repeats 3 \
        "${WAIT[@]}" --out "$OUT/w2v2-backends.json" ;;
    ref-mel)  # the authors' loop (one clip, NCHW, default threads) against streamdet's scorer
      $PY -m streamdet bench --compare-reference --arch mel_lcnn --windows 128 --batch 2 --threads 1 --workers 2 \
        --repeats 5 "${WAIT[@]}" --out "$OUT/ref-mel.json" ;;
    ref-w2v2)  # one window through the whole 24-layer XLS-R against five layers, batched
      $PY -m streamdet bench --compare-reference --arch w2v2_aasist --windows 8 --batch 8 --repeats 3 \
        "${WAIT[@]}" --out "$OUT/ref-w2v2.json" ;;
    ref-w2v2-onnx)  # the same, ONNX Runtime included (whole random XLS-R saved, its CM exported)
      $PY benchmarks/reference_onnx.py --arch w2v2_aasist --windows 8 --repeats 3 "${WAIT[@]}" \
        --out "$OUT/ref-w2v2-onnx.json" ;;
    sweep)  # the service at a 1-s hop with the Mel-LCNN, grown until p99 > 500 ms or a drop
      [ -f runs/bench/work/mel_lcnn/manifest.json ] || $PY benchmarks/model_backends.py --arch mel_lcnn \
        --batch-sizes 1 --repeats 2 --out "$OUT/prepare.json"
      $PY -m streamdet bench --engine runs/bench/work/mel_lcnn --sweep --duration 30 --threads 1 \
        "${WAIT[@]}" --out "$OUT/sweep-mel.json" ;;
    sweep-threads2)  # the same with two torch threads (torch's default on this machine)
      $PY -m streamdet bench --engine runs/bench/work/mel_lcnn --sweep --streams 32,40,48,56,64 --duration 30 \
        --threads 2 "${WAIT[@]}" --out "$OUT/sweep-mel-threads2.json" ;;
    load-zmq)  # the shipped CM at serve's defaults: 16 real-time ZeroMQ streams for 60 s
      $PY -m streamdet bench --streams 16 --duration 60 "${WAIT[@]}" --out "$OUT/load-zmq-16x60.json" ;;
    load-whip)  # the same service, 10 WebRTC (WHIP, Opus) publishers for 60 s
      $PY -m streamdet bench --streams 10 --whip-streams 10 --duration 60 "${WAIT[@]}" \
        --out "$OUT/load-whip-10x60.json" ;;
    journal)  # the event journal: one commit's cost, then the service without it / with it / with fsync, twice
      $PY benchmarks/journal_commit.py --dir runs/bench/work/journal --out "$OUT/journal-commit.json"
      [ -f runs/bench/work/mel_lcnn/manifest.json ] || $PY -c \
        "from streamdet.bench.models import save_random_cm; save_random_cm('runs/bench/work/mel_lcnn')"
      for round in 1 2; do
        for mode in off normal full; do
          rm -rf runs/bench/work/journal-serve && mkdir -p runs/bench/work/journal-serve
          args=(--serve-arg=--journal=runs/bench/work/journal-serve/events.sqlite)
          [ "$mode" = off ] && args=(--serve-arg=--no-journal)
          STREAMDET_EVENTS__JOURNAL_SYNCHRONOUS=$([ "$mode" = full ] && echo full || echo normal) \
            $PY -m streamdet bench --engine runs/bench/work/mel_lcnn --streams 16 --duration 20 --threads 1 \
            --settle-s 10 "${args[@]}" "${WAIT[@]}" --out "$OUT/journal-$mode-$round.json"
        done
      done ;;
    rtp)  # 50 calls sending G.711 u-law RTP to ports opened with POST /rtp, two single-threaded workers
      [ -f runs/bench/work/mel_lcnn/manifest.json ] || $PY benchmarks/model_backends.py --arch mel_lcnn \
        --batch-sizes 1 --repeats 2 --out "$OUT/prepare.json"
      $PY -m streamdet bench --engine runs/bench/work/mel_lcnn --transport rtp --streams 50 --duration 30 \
        --threads 1 --serve-arg=--workers=2 "${WAIT[@]}" --out "$OUT/rtp-50.json" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
