#!/usr/bin/env python3
"""The comparison with the authors' scoring, ONNX Runtime included, on one set of random weights.

``streamdet bench --compare-reference --onnx ENGINE`` times ONNX Runtime next to torch only when the
engine holds the very weights the reference runs (it checks both hashes). This script prepares that
in ``--work``: a random XLS-R 300M-shaped model with all 24 layers (the reference runs them all), a
random-backend CM naming it, and the CM's ONNX engine (five layers, exported by ``offline``); then
it runs the command:

    .venv/bin/python benchmarks/reference_onnx.py --arch w2v2_aasist --windows 8 --repeats 3 \\
        --out runs/bench/docs/ref-w2v2-onnx.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def main() -> int:
    from model_backends import prepare

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("mel_lcnn", "w2v2_lcnn", "w2v2_aasist"), default="w2v2_aasist")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench" / "work")
    args, bench_args = parser.parse_known_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cm_dir, onnx_dir, xlsr_dir = prepare(args.arch, args.work, xlsr_layers=24)
    from streamdet.cli import main as streamdet

    extra = ["--w2v2-source", xlsr_dir] if xlsr_dir else []
    return streamdet(["bench", "--compare-reference", "--arch", args.arch, "--engine", str(cm_dir),
                      "--onnx", str(onnx_dir), *extra, *bench_args])


if __name__ == "__main__":
    sys.exit(main())
