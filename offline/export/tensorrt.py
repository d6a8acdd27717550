"""Build a TensorRT plan from the exported ONNX graph (TensorRT 10 Python API).

One optimisation profile over the batch axis (min/opt/max windows), fp32 or fp16, and a timing cache
file reused across builds on the same GPU. In fp16 plans the layers before the first normalisation
(the front-end: mel power spectrum or waveform normalisation, and the first convolution) and every
normalisation layer stay fp32: mel power reaches 1e5 on loud audio, past fp16's 65504.

A plan runs only under the TensorRT version and on the GPU model that built it; its manifest records
both, and ``TensorRTScorer`` refuses a plan built elsewhere. TensorRT cannot be installed on this
project's build and CI machines, so only the code around the builder is tested there.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from offline.export.common import (
    ExportError,
    load_source_cm,
    prepare_out_dir,
    sha256_file,
    torch_probabilities,
    verification_windows,
)
from offline.export.onnx import DEFAULT_OPSET, build_manifest, export_graph
from streamdet.cm import Countermeasure
from streamdet.manifest import (
    ENGINE_FILES,
    MANIFEST_NAME,
    BatchProfile,
    EngineManifest,
    TensorRTInfo,
    write_manifest,
)

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 4 << 30
DEFAULT_TIMING_CACHE = Path("engines") / "tensorrt-timing.cache"
TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2}
"""Verification tolerance on the bona fide probability against the torch CM on CPU."""

PREFIX_END_TYPES = frozenset({"SCALE", "NORMALIZATION"})
ALWAYS_FP32_TYPES = frozenset({"NORMALIZATION"})
NON_COMPUTE_TYPES = frozenset({"CONSTANT", "SHAPE", "IDENTITY", "ASSERTION", "CAST"})


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or an ExportError saying how to get it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise ExportError(
            "TensorRT is not installed: pip install 'streamdet[tensorrt]' on the machine with the target GPU"
        ) from exc
    return tensorrt


def make_profile(max_batch: int, opt_batch: int | None = None, min_batch: int = 1) -> BatchProfile:
    """The batch profile: ``opt`` defaults to the largest power of two not above min(16, max)."""
    if opt_batch is None:
        opt_batch = 1
        while opt_batch * 2 <= min(16, max_batch):
            opt_batch *= 2
        opt_batch = max(opt_batch, min_batch)
    try:
        return BatchProfile(min=min_batch, opt=opt_batch, max=max_batch)
    except ValueError as exc:
        raise ExportError(f"invalid batch profile: {exc}") from exc


def profile_shapes(profile: BatchProfile, window_samples: int) -> tuple[tuple[int, int], ...]:
    """(min, opt, max) input shapes for ``IOptimizationProfile.set_shape``."""
    return tuple((batch, window_samples) for batch in (profile.min, profile.opt, profile.max))


def fp32_layer_indices(layer_types: Sequence[str]) -> list[int]:
    """Which layers an fp16 plan keeps in fp32: everything before the first normalisation, and every
    normalisation layer. Types are ``trt.LayerType`` names; shape and constant layers are left alone."""
    pinned = []
    in_prefix = True
    for index, kind in enumerate(layer_types):
        if kind not in NON_COMPUTE_TYPES and (in_prefix or kind in ALWAYS_FP32_TYPES):
            pinned.append(index)
        if kind in PREFIX_END_TYPES:
            in_prefix = False
    return pinned


def _pin_fp32(trt: ModuleType, network: object) -> int:
    """Apply ``fp32_layer_indices`` to a parsed network; returns how many layers were pinned."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]  # type: ignore[attr-defined]
    pinned = 0
    for index in fp32_layer_indices([layer.type.name for layer in layers]):
        layer = layers[index]
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outputs or any(out.dtype not in (trt.float32, trt.float16) for out in outputs):
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned


def _load_timing_cache(trt: ModuleType, config: object, path: Path | None) -> object:
    data = path.read_bytes() if path and path.is_file() else b""
    cache = config.create_timing_cache(data)  # type: ignore[attr-defined]
    if cache is None and data:
        log.warning("timing cache %s is unusable here; starting an empty one", path)
        cache = config.create_timing_cache(b"")  # type: ignore[attr-defined]
    config.set_timing_cache(cache, ignore_mismatch=False)  # type: ignore[attr-defined]
    return cache


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(name, compute capability) of a CUDA device, as torch reports them."""
    import torch

    if not torch.cuda.is_available():
        raise ExportError("building a TensorRT plan needs a CUDA GPU")
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


def build_plan(
    onnx_path: str | Path,
    plan_path: str | Path,
    profile: BatchProfile,
    input_name: str,
    window_samples: int,
    fp16: bool = False,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache: str | Path | None = DEFAULT_TIMING_CACHE,
) -> TensorRTInfo:
    """Parse the ONNX graph, build and serialise a plan; returns what the manifest records about it."""
    trt = import_tensorrt()
    gpu_name, capability = gpu_identity()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(input_name, *profile_shapes(profile, window_samples))
    config.add_optimization_profile(optimisation)
    pinned = 0
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        pinned = _pin_fp32(trt, network)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: scores match the torch CM closely
    cache_path = Path(timing_cache) if timing_cache else None
    _load_timing_cache(trt, config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build a plan from {onnx_path} (see its log above)")
    Path(plan_path).write_bytes(bytes(serialized))
    if cache_path:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return TensorRTInfo(
        version=trt.__version__,
        gpu_name=gpu_name,
        compute_capability=capability,
        profile=profile,
        workspace_bytes=workspace_bytes,
        fp32_layers=pinned,
    )


def tensorrt_manifest(onnx_manifest: EngineManifest, plan: Path, info: TensorRTInfo, fp16: bool) -> EngineManifest:
    """Turn the ONNX graph's manifest into the plan's: file, hash, precision and the TensorRT section."""
    return onnx_manifest.model_copy(
        update={
            "engine": "tensorrt",
            "file": plan.name,
            "file_sha256": sha256_file(plan),
            "precision": "fp16" if fp16 else "fp32",
            "tensorrt": info,
            "verification": {},
        }
    )


def verify_plan(cm: Countermeasure, plan: Path, precision: str, batch: int = 3) -> dict[str, float]:
    """Score deterministic windows with the plan and compare with the torch CM on CPU."""
    import numpy as np

    from streamdet.scoring.tensorrt_scorer import TensorRTScorer

    windows = verification_windows(batch=batch)
    scorer = TensorRTScorer(plan)
    try:
        got = scorer.score_batch(windows)
    finally:
        scorer.close()
    diff = float(np.abs(got - torch_probabilities(cm, windows)).max())
    tolerance = TOLERANCE[precision]
    if not diff <= tolerance:
        raise ExportError(f"{plan}: TensorRT ({precision}) differs from the torch CM by {diff:.3g} (> {tolerance:g})")
    return {"max_abs_prob_diff": diff, "windows": float(batch), "tolerance": tolerance}


def export_tensorrt(
    cm: Countermeasure | str | Path,
    out: str | Path,
    w2v2_source: str | None = None,
    fp16: bool = False,
    profile: BatchProfile | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache: str | Path | None = DEFAULT_TIMING_CACHE,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
) -> EngineManifest:
    """Export a CM to ``out/model.plan`` + ``out/manifest.json`` (the ONNX graph is an intermediate)."""
    import_tensorrt()  # fail before the (slow) ONNX export
    if not isinstance(cm, Countermeasure):
        cm = load_source_cm(cm, w2v2_source)
    profile = profile or make_profile(64)
    out = prepare_out_dir(out)
    plan = out / ENGINE_FILES["tensorrt"]
    with tempfile.TemporaryDirectory(prefix="streamdet-onnx-") as tmp:
        onnx_path = export_graph(cm, Path(tmp) / ENGINE_FILES["onnx"], opset)
        onnx_manifest = build_manifest(cm, onnx_path, opset, {})
        info = build_plan(
            onnx_path, plan, profile, onnx_manifest.input_name, onnx_manifest.window_samples,
            fp16=fp16, workspace_bytes=workspace_bytes, timing_cache=timing_cache,
        )
    manifest = tensorrt_manifest(onnx_manifest, plan, info, fp16)
    write_manifest(out / MANIFEST_NAME, manifest)
    if verify:
        manifest = manifest.model_copy(update={"verification": verify_plan(cm, plan, manifest.precision)})
        write_manifest(out / MANIFEST_NAME, manifest)
    log.info("built %s on %s (TensorRT %s) → %s", manifest.model_id, info.gpu_name, info.version, plan)
    return manifest
