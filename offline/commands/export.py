"""``offline export``: a CM directory → ONNX graph, TensorRT plan or Triton model repository."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from offline.export.common import default_engine_dir, load_source_cm
from streamdet.errors import ExportError

FORMATS = ("onnx", "tensorrt", "triton")
TRITON_BACKENDS = ("onnxruntime", "tensorrt", "python")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a CM to ONNX, a TensorRT plan or a Triton model repository",
        description="Export the whole CM (front-end + backend) as one graph: waveform (batch, 64600) "
        "float32 at 16 kHz → logits (batch, 2) and bonafide_prob (batch,). ONNX exports are checked "
        "against the torch CM with ONNX Runtime on CPU before the manifest is written.",
    )
    p.add_argument("cm", type=Path, help="CM directory (manifest.json + model.safetensors)")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="what to build (default onnx)")
    p.add_argument("--out", type=Path,
                   help="engine directory, or for triton the model repository "
                   "(default engines/<cm>-onnx, engines/<cm>-tensorrt-<precision>, engines/triton)")
    p.add_argument("--w2v2-source", help="XLS-R hub id or local directory (overrides the CM manifest's)")
    p.add_argument("--fp16", action="store_true", help="fp16 TensorRT plan (tensorrt, or triton with tensorrt)")
    p.add_argument("--max-batch", type=int, default=64, help="TensorRT profile max / Triton max_batch_size")
    p.add_argument("--opt-batch", type=int, help="TensorRT profile opt batch (default min(16, max))")
    p.add_argument("--min-batch", type=int, default=1, help="TensorRT profile min batch")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--timing-cache", type=Path, default=Path("engines/tensorrt-timing.cache"),
                   help="TensorRT timing cache file, reused across builds")
    p.add_argument("--workspace-gib", type=float, default=4.0, help="TensorRT builder workspace")
    p.add_argument("--model-name", help="Triton model name (default: the CM's name)")
    p.add_argument("--triton-backend", choices=TRITON_BACKENDS, default="onnxruntime",
                   help="Triton backend: onnxruntime (model.onnx), tensorrt (model.plan, built here) or "
                   "python (model.onnx run by ONNX Runtime inside Triton's Python backend)")
    p.add_argument("--instances", type=int, default=1, help="Triton instance_group count")
    p.add_argument("--instance-kind", choices=("auto", "cpu", "gpu"), default="auto", help="Triton instance kind")
    p.add_argument("--max-queue-delay-us", type=int, default=2000, help="Triton dynamic batching queue delay")
    p.add_argument("--no-verify", action="store_true", help="skip the comparison with the torch CM")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The ONNX exporter's passes log every rewrite at INFO; keep the command's output readable.
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.fp16 and args.format == "onnx":
        raise ExportError("--fp16 applies to TensorRT plans; ONNX engines are fp32 (use --format tensorrt)")
    cm = load_source_cm(args.cm, args.w2v2_source)
    verify = not args.no_verify
    if args.format == "onnx":
        from offline.export.onnx import export_onnx

        out = args.out or default_engine_dir(cm.manifest, "onnx")
        manifest = export_onnx(cm, out, opset=args.opset, verify=verify)
        target = out / manifest.file
    elif args.format == "tensorrt":
        from offline.export.tensorrt import export_tensorrt, make_profile

        precision = "fp16" if args.fp16 else "fp32"
        out = args.out or default_engine_dir(cm.manifest, "tensorrt", precision)
        manifest = export_tensorrt(
            cm, out, fp16=args.fp16, profile=make_profile(args.max_batch, args.opt_batch, args.min_batch),
            workspace_bytes=int(args.workspace_gib * (1 << 30)), timing_cache=args.timing_cache,
            opset=args.opset, verify=verify,
        )
        target = out / manifest.file
    else:
        from offline.export.triton import export_triton

        out = args.out or Path("engines") / "triton"
        manifest = export_triton(
            cm, out, model_name=args.model_name, backend=args.triton_backend, max_batch=args.max_batch,
            max_queue_delay_us=args.max_queue_delay_us, instance_count=args.instances,
            instance_kind=args.instance_kind, fp16=args.fp16, opt_batch=args.opt_batch, opset=args.opset,
            verify=verify,
        )
        assert manifest.triton is not None
        target = out / manifest.triton.model_name
    diff = manifest.verification.get("max_abs_prob_diff")
    checked = f", max |Δp| vs torch {diff:.2e}" if diff is not None else ""
    print(f"exported {manifest.model_id} → {target}{checked}")
    if args.format == "triton":
        assert manifest.triton is not None
        print(f"serve: tritonserver --model-repository {out}; then --engine triton://HOST:8001/{manifest.triton.model_name}")
    else:
        print(f"serve: streamdet serve --engine {target}")
    return 0
