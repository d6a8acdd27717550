#!/usr/bin/env bash
# The telephone-robust Mel-LCNN, end to end (docs/field-accuracy.md).
# Run from the repository root. About 10-20 minutes of CPU for training, ~10 for the evaluations.
#   SHARED=../shared scripts/field_recipe.sh            # all steps
#   SHARED=../shared scripts/field_recipe.sh evaluate   # one step: data|splits|pull|train|calibrate|evaluate|ship
set -euo pipefail

SHARED=${SHARED:-../shared}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/field_eval}
CALLS_MINUTES=${CALLS_MINUTES:-3}
NEW_CM=runs/telephone_mellcnn/cm
RELEASED_CM=engines/codec_mellcnn
step=${1:-all}

run() { echo "+ $*" >&2; "$@"; }

if [[ $step == all || $step == data ]]; then
  # Real 8 kHz telephone prompts (5 languages, one speaker each) and 16 synthetic spoof systems.
  run $PY -m offline data asterisk --dest data/asterisk
  run $PY -m offline data tts-spoofs --dest data/tts_spoofs --asterisk-root data/asterisk
fi

if [[ $step == all || $step == splits ]]; then
  # Train / dev / held-out lists (data/field/*.txt, data/field/splits.json).
  run $PY -m offline field-splits --config configs/field/splits.toml
fi

if [[ $step == all || $step == pull ]]; then
  # The released codec-trained Mel-LCNN: the baseline, and the starting point of the fine-tuning.
  run $PY -m offline pull codec_mellcnn --out $RELEASED_CM --source "$SHARED/codecfake/pretrained"
fi

if [[ $step == all || $step == train ]]; then
  run $PY -m offline train --config configs/field/mel_lcnn_telephone.toml
fi

if [[ $step == all || $step == calibrate ]]; then
  # Both CMs: the same dev reals, the same criterion (1 % of real windows alerting), wideband.
  for cm in $RELEASED_CM $NEW_CM; do
    run $PY -m offline calibrate $cm --real data/field/dev_real.txt --fake data/field/dev_fake.txt \
      --target-far 0.01 --channel wideband --json
  done
fi

if [[ $step == all || $step == evaluate ]]; then
  # Held-out only: Asterisk it + ru, ALM-ADD A07 + A10 (real and fake), 5 held-out spoof systems;
  # clips chained into calls of CALLS_MINUTES per list and class; the service's default hop and k/n/m.
  mkdir -p $OUT
  for pair in codec_mellcnn:$RELEASED_CM telephone_mellcnn:$NEW_CM; do
    name=${pair%%:*}; cm=${pair#*:}
    for channel in wideband ulaw; do
      run $PY -m offline evaluate $cm --streaming --calls-minutes $CALLS_MINUTES --channel $channel \
        --list data/field/heldout_real_asterisk.txt --list data/field/heldout_real_alm.txt \
        --list data/field/heldout_fake_alm.txt --list data/field/heldout_fake_tts.txt \
        --out $OUT/$name-$channel | tee $OUT/$name-$channel.txt
    done
  done
fi

if [[ $step == all || $step == ship ]]; then
  # The CM that `streamdet serve` uses by default: weights + manifest (with its calibration).
  run mkdir -p streamdet/pretrained/telephone_mellcnn
  run cp $NEW_CM/model.safetensors $NEW_CM/manifest.json streamdet/pretrained/telephone_mellcnn/
fi
