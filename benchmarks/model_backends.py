#!/usr/bin/env python3
"""Model-only windows/s of the torch and ONNX Runtime backends on the same random-weight CMs.

``streamdet bench --model-only`` times any CM directory or engine, but ``streamdet`` cannot export
ONNX (that is ``offline``'s job, and ``streamdet`` never imports ``offline``). This script prepares
what it needs in ``--work`` and then runs that very command:

1. a random-weight CM per architecture (W2V2: a random XLS-R 300M-shaped front-end cut to five
   layers, saved beside it and named in the CM's manifest);
2. its ONNX engine (``offline.export.onnx.export_onnx``, checked against the torch CM on export);
3. ``streamdet bench --model-only --engine CM --engine ONNX --backend torch,onnxruntime ...``.

    .venv/bin/python benchmarks/model_backends.py --arch mel_lcnn --batch-sizes 1,2,4,8 --threads 1,2 \\
        --out runs/bench/docs/backends-mel.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def prepare(architecture: str, work: Path, xlsr_layers: int = 5) -> tuple[Path, Path, str | None]:
    """(CM directory, ONNX engine directory, XLS-R directory or None), built once per work folder.

    ``xlsr_layers``: 5 is all streamdet runs; 24 (the whole XLS-R) lets the reference comparison run
    the authors' full model on the very weights the engine holds (``benchmarks/reference_onnx.py``).
    """
    from streamdet.bench.models import random_backend, random_xlsr
    from streamdet.cm import save_cm
    from streamdet.manifest import CMManifest

    suffix = "" if xlsr_layers == 5 else f"-xlsr{xlsr_layers}"
    cm_dir, onnx_dir = work / f"{architecture}{suffix}", work / f"{architecture}{suffix}-onnx"
    xlsr_dir = work / f"xlsr-300m-{xlsr_layers}layers" if architecture != "mel_lcnn" else None
    if xlsr_dir is not None and not (xlsr_dir / "config.json").is_file():
        print(f"saving a random XLS-R 300M-shaped front-end ({xlsr_layers} layers) to {xlsr_dir}")
        random_xlsr(xlsr_layers).save_pretrained(xlsr_dir)
    if not (cm_dir / "manifest.json").is_file():
        manifest = CMManifest(name=f"random_{architecture}", architecture=architecture,  # type: ignore[arg-type]
                              w2v2_source=str(xlsr_dir) if xlsr_dir else None)
        save_cm(cm_dir, random_backend(architecture).state_dict(), manifest)
    if not (onnx_dir / "manifest.json").is_file():
        from offline.export.onnx import export_onnx

        for noisy in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        print(f"exporting {cm_dir} to ONNX in {onnx_dir}")
        export_onnx(cm_dir, onnx_dir)
    return cm_dir, onnx_dir, str(xlsr_dir) if xlsr_dir else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("mel_lcnn", "w2v2_lcnn", "w2v2_aasist"), default="mel_lcnn")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "bench" / "work",
                        help="where the random CMs and engines are kept between runs")
    args, bench_args = parser.parse_known_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cm_dir, onnx_dir, _xlsr = prepare(args.arch, args.work)
    from streamdet.cli import main as streamdet

    return streamdet(["bench", "--model-only", "--engine", str(cm_dir), "--engine", str(onnx_dir),
                      "--backend", "torch,onnxruntime", *bench_args])


if __name__ == "__main__":
    sys.exit(main())
