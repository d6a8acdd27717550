#!/usr/bin/env python3
"""Check and time the engines on a CUDA GPU (or, for a smoke test, on CPU); write a JSON report.

For each CM (a random Mel-LCNN and a W2V2-AASIST on a random XLS-R-300M-shaped five-layer front-end,
or the CMs you pass): export ONNX (and a TensorRT fp16 plan where TensorRT is installed), score the
same windows with every scorer available on the device, compare each with the torch CM in fp32 on
CPU (fp16 tolerance 1e-2 on the bona fide probability; fp32 engines 1e-4), and time windows/s per
batch size. Then the service sweep (``streamdet bench --sweep``) with the Mel-LCNN on the device: the
host path (ingest, windows, batching, events) feeding the GPU scorer, as the service runs it. Needs
no network. Runs within 8 minutes on one H100 (``--budget-s`` guards the timing and the sweep).

    python scripts/gpu_check.py --out gpu_check.json                 # CUDA machine
    python scripts/gpu_check.py --device cpu --quick --out smoke.json # anywhere, about a minute
    python scripts/gpu_check.py --sweep '' --out gpu_check.json       # without the service sweep
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FP16_TOLERANCE = 1e-2
FP32_TOLERANCE = 1e-4
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
QUICK_BATCHES = (1, 4)
SWEEP_STREAMS = "64,128,256,512"
"""Real-time streams per sweep step on a GPU (1-s hop): what one host feeds a GPU scorer."""
SWEEP_DURATION_S = 20.0

log = logging.getLogger("gpu_check")


def tiny_xlsr_config():
    """A small XLS-R-shaped config (1024-d, 201 frames per window) for quick CPU runs."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(hidden_size=1024, num_hidden_layers=5, num_attention_heads=16, intermediate_size=256,
                          conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=16,
                          do_stable_layer_norm=True, feat_extract_norm="layer")


def prepare_cms(args: argparse.Namespace, work: Path) -> list[tuple[str, Path, str | None]]:
    """(label, CM directory, w2v2 source) for every CM to check."""
    from offline.export.random_cm import save_random_cm, save_random_w2v2
    from streamdet.models.w2v2 import xlsr_300m_config

    cms = []
    if "mel_lcnn" in args.models:
        cm_dir = args.mel_cm or work / "mel_lcnn"
        if not args.mel_cm:
            save_random_cm(cm_dir, "mel_lcnn", name="random_mel_lcnn")
        cms.append(("mel_lcnn", Path(cm_dir), None))
    if "w2v2_aasist" in args.models:
        source = args.w2v2_source
        if source is None:
            config = tiny_xlsr_config() if args.quick else xlsr_300m_config(5)
            source = str(save_random_w2v2(work / "xlsr", config))
        cm_dir = args.w2v2_cm or work / "w2v2_aasist"
        if not args.w2v2_cm:
            save_random_cm(cm_dir, "w2v2_aasist", name="random_w2v2_aasist", w2v2_source=source)
        cms.append(("w2v2_aasist", Path(cm_dir), source))
    return cms


def make_scorers(cm_dir: Path, source: str | None, device: str, work: Path, label: str,
                 report: dict) -> dict[str, tuple[object, float]]:
    """Every scorer this machine can run for one CM, with its tolerance against torch fp32 on CPU."""
    import importlib.util

    import onnxruntime as ort

    from offline.export.onnx import export_onnx
    from streamdet.scoring.onnx_scorer import CUDA_PROVIDER, OnnxScorer
    from streamdet.scoring.torch_scorer import TorchScorer

    scorers: dict[str, tuple[object, float]] = {}
    started = time.monotonic()
    manifest = export_onnx(cm_dir, work / f"{label}-onnx", w2v2_source=source)
    report["export"] = {"onnx_s": round(time.monotonic() - started, 1), "onnx_check": manifest.verification}
    if device == "cpu":
        scorers["torch_cpu_fp32"] = (TorchScorer(cm_dir, device="cpu", w2v2_source=source), 0.0)
        scorers["onnxruntime_cpu"] = (OnnxScorer(work / f"{label}-onnx" / "model.onnx", device="cpu"), FP32_TOLERANCE)
        return scorers
    scorers["torch_cuda_fp16"] = (TorchScorer(cm_dir, device=device, w2v2_source=source, max_batch=512), FP16_TOLERANCE)
    if CUDA_PROVIDER in ort.get_available_providers():
        scorers["onnxruntime_cuda_fp32"] = (
            OnnxScorer(work / f"{label}-onnx" / "model.onnx", device="cuda", max_batch=512), FP32_TOLERANCE * 10)
    else:
        report["skipped"] = {"onnxruntime_cuda_fp32": "onnxruntime has no CUDA provider (install onnxruntime-gpu)"}
    if importlib.util.find_spec("tensorrt") is not None:
        from offline.export.tensorrt import export_tensorrt, make_profile
        from streamdet.scoring.tensorrt_scorer import TensorRTScorer

        started = time.monotonic()
        plan = export_tensorrt(cm_dir, work / f"{label}-trt", w2v2_source=source, fp16=True,
                               profile=make_profile(max(BATCHES), 32), timing_cache=work / "timing.cache")
        report["export"]["tensorrt_fp16_s"] = round(time.monotonic() - started, 1)
        scorers["tensorrt_fp16"] = (TensorRTScorer(work / f"{label}-trt" / plan.file, max_batch=512), FP16_TOLERANCE)
    else:
        report.setdefault("skipped", {})["tensorrt_fp16"] = "TensorRT is not installed"
    return scorers


def check(scorers: dict, reference: Callable[[np.ndarray], np.ndarray], windows: np.ndarray) -> dict:
    """Max |Δ P(bona fide)| of each scorer against the torch CM in fp32 on CPU."""
    expected = reference(windows)
    results = {}
    for name, (scorer, tolerance) in scorers.items():
        diff = float(np.abs(scorer.score_batch(windows) - expected).max())
        results[name] = {"max_abs_prob_diff": diff, "tolerance": tolerance, "ok": diff <= tolerance}
    return results


def throughput(scorer: object, batch: int, seconds: float, rng: np.random.Generator) -> float:
    """Windows per second at one batch size: warm up, then repeat calls for about ``seconds``."""
    windows = (rng.standard_normal((batch, 64600)) * 0.05).astype(np.float32)
    scorer.score_batch(windows)
    scorer.score_batch(windows)
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < seconds:
        scorer.score_batch(windows)
        calls += 1
    return batch * calls / (time.perf_counter() - started)


def service_sweep(cm_dir: Path, device: str, streams: str, duration_s: float, work: Path,
                  timeout_s: float) -> dict:
    """``streamdet bench --sweep`` with this CM on ``device`` (a real ``streamdet serve``): its JSON
    report, or what stopped it. Each step runs whatever the one before did (``--keep-going``)."""
    import subprocess

    out = work / "sweep.json"
    command = [sys.executable, "-m", "streamdet", "bench", "--engine", str(cm_dir), "--device", device, "--sweep",
               "--keep-going", "--streams", streams, "--duration", str(duration_s), "--out", str(out)]
    log.info("service sweep: %s", " ".join(command))
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"command": command, "error": f"timed out after {timeout_s:.0f} s"}
    if not out.is_file():
        return {"command": command, "error": f"exit status {done.returncode}", "stderr": done.stderr[-2000:]}
    return {"command": command, "exit_status": done.returncode, "report": json.loads(out.read_text()),
            "stdout": done.stdout[-2000:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="smoke test: Mel-LCNN only, batches 1 and 4, short timings")
    parser.add_argument("--models", default=None, help="comma-separated: mel_lcnn,w2v2_aasist")
    parser.add_argument("--mel-cm", type=Path, help="a Mel-LCNN CM directory (default: random weights)")
    parser.add_argument("--w2v2-cm", type=Path, help="a W2V2-AASIST CM directory (default: random weights)")
    parser.add_argument("--w2v2-source", help="XLS-R directory (default: random XLS-R-300M-shaped, 5 layers)")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes")
    parser.add_argument("--seconds", type=float, default=None, help="timing per batch size")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop timing after this many seconds")
    parser.add_argument("--sweep", default=None, metavar="STREAMS",
                        help=f"stream counts of the service sweep (default {SWEEP_STREAMS}; --quick: none; '' skips it)")
    parser.add_argument("--sweep-duration", type=float, default=SWEEP_DURATION_S, help="seconds per sweep step")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args.models = (args.models or ("mel_lcnn" if args.quick else "mel_lcnn,w2v2_aasist")).split(",")
    batches = [int(b) for b in args.batches.split(",")] if args.batches else list(QUICK_BATCHES if args.quick else BATCHES)
    seconds = args.seconds if args.seconds is not None else (0.2 if args.quick else 1.0)

    import onnxruntime
    import torch

    from offline.export.common import verification_windows
    from streamdet.scoring.torch_scorer import TorchScorer

    if args.device != "cpu" and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --device cpu (smoke test) on this machine")
    started = time.monotonic()
    report: dict = {
        "device": torch.cuda.get_device_name(args.device) if args.device != "cpu" else platform.processor() or "cpu",
        "host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__, "batches": batches, "models": {},
    }
    try:
        import tensorrt

        report["tensorrt"] = tensorrt.__version__
    except ImportError:
        report["tensorrt"] = None
    rng = np.random.default_rng(0)
    sweep_streams = args.sweep if args.sweep is not None else ("" if args.quick else SWEEP_STREAMS)
    ok = True
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        for label, cm_dir, source in prepare_cms(args, work):
            log.info("%s: exporting and loading scorers", label)
            entry: dict = {}
            scorers = make_scorers(cm_dir, source, args.device, work, label, entry)
            reference = TorchScorer(cm_dir, device="cpu", w2v2_source=source)
            entry["checks"] = check(scorers, reference.score_batch, verification_windows(batch=4, seed=11))
            ok &= all(c["ok"] for c in entry["checks"].values())
            entry["windows_per_s"] = {}
            for name, (scorer, _tol) in scorers.items():
                rates = {}
                for batch in batches:
                    if time.monotonic() - started > args.budget_s:
                        rates[str(batch)] = None
                        continue
                    rates[str(batch)] = round(throughput(scorer, batch, seconds, rng), 1)
                    log.info("%s %s batch %d: %.1f windows/s", label, name, batch, rates[str(batch)])
                entry["windows_per_s"][name] = rates
                scorer.close()
            report["models"][label] = entry
            if label == "mel_lcnn" and sweep_streams:
                remaining = args.budget_s - (time.monotonic() - started)
                report["service_sweep"] = service_sweep(cm_dir, args.device, sweep_streams, args.sweep_duration,
                                                        work, max(60.0, remaining))
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["ok"] = ok
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({label: m["checks"] for label, m in report["models"].items()}, indent=2))
    print(f"{'ok' if ok else 'FAILED'}: report in {args.out} ({report['elapsed_s']} s on {report['device']})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
