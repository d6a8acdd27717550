"""Export a CM to ONNX: one graph, ``waveform`` (batch, 64600) → ``logits`` (batch, 2), ``bonafide_prob`` (batch,).

Uses torch's dynamo-based exporter (``torch.onnx.export(..., dynamo=True)``, needs ``onnxscript``): the
TorchScript-based one loses the LCNN's static channel counts at its Max-Feature-Map splits and refuses
``torch.stft``'s complex output. The mel front-end is exported through ``DFTMelFrontend`` (conv1d
with a windowed DFT basis), which every runtime, TensorRT included, can run. The result is checked
against the torch CM with ONNX Runtime on CPU before the manifest is written.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from offline.export.common import (
    ExportError,
    frontend_sha256,
    load_source_cm,
    prepare_out_dir,
    sha256_file,
    torch_probabilities,
    verification_windows,
)
from offline.export.graph import INPUT_NAME, OUTPUT_NAMES, ExportableCM
from streamdet.cm import Countermeasure
from streamdet.manifest import ENGINE_FILES, MANIFEST_NAME, EngineManifest, write_manifest

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18
"""The dynamo exporter's native opset; ONNX Runtime and TensorRT 10 both support it."""

MAX_EXPORT_BATCH = 4096
EXTERNAL_DATA_BYTES = 1_500_000_000
"""Above this many bytes of weights, tensors go to ``model.onnx.data`` (protobuf's 2 GiB limit)."""

DEFAULT_TOLERANCE = 1e-4


def export_graph(cm: Countermeasure, path: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write the CM as one ONNX graph with a dynamic batch axis; returns the file written."""
    path = Path(path)
    model = ExportableCM(cm).cpu().float().eval()
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    example = torch.from_numpy(verification_windows(batch=2))
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=({0: batch},),
                external_data=weight_bytes > EXTERNAL_DATA_BYTES,
                verbose=False,
            )
        except ImportError as exc:
            raise ExportError(f"ONNX export needs onnxscript ({exc}); pip install 'streamdet[export]'") from exc
        except Exception as exc:  # the exporter raises many types; name the CM and the cause
            raise ExportError(f"torch.onnx.export failed for {cm.manifest.name}: {exc}") from exc
    return path


def onnxruntime_probabilities(path: str | Path, windows: np.ndarray) -> np.ndarray:
    """Bona fide probabilities from an exported graph, with ONNX Runtime on CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (prob,) = session.run([OUTPUT_NAMES[1]], {INPUT_NAME: windows})
    return np.asarray(prob, dtype=np.float32).reshape(-1)


def verify_graph(
    cm: Countermeasure, path: str | Path, tolerance: float = DEFAULT_TOLERANCE, batch: int = 3
) -> dict[str, float]:
    """Compare ONNX Runtime (CPU) with the torch CM on deterministic windows; raise beyond ``tolerance``."""
    windows = verification_windows(batch=batch)
    expected = torch_probabilities(cm, windows)
    got = onnxruntime_probabilities(path, windows)
    single = onnxruntime_probabilities(path, windows[:1])  # the batch axis really is dynamic
    diff = float(max(np.abs(got - expected).max(), np.abs(single - expected[:1]).max()))
    if not diff <= tolerance:
        raise ExportError(f"{path}: ONNX Runtime differs from the torch CM by {diff:.3g} (> {tolerance:g})")
    return {"max_abs_prob_diff": diff, "windows": float(batch), "tolerance": tolerance}


def build_manifest(cm: Countermeasure, file: Path, opset: int, verification: dict[str, float]) -> EngineManifest:
    """The engine manifest of an ONNX graph exported from ``cm``."""
    return EngineManifest(
        name=cm.manifest.name,
        engine="onnx",
        file=file.name,
        file_sha256=sha256_file(file),
        input_name=INPUT_NAME,
        output_names=OUTPUT_NAMES,
        precision="fp32",
        opset=opset,
        exporter=f"torch {torch.__version__} dynamo",
        source_cm_sha256=cm.manifest.weights_sha256,
        frontend_sha256=frontend_sha256(cm),
        sample_rate=cm.manifest.sample_rate,
        window_samples=cm.manifest.window_samples,
        cm=cm.manifest,
        verification=verification,
    )


def export_onnx(
    cm: Countermeasure | str | Path,
    out: str | Path,
    w2v2_source: str | None = None,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
) -> EngineManifest:
    """Export a CM (object or directory) to ``out/model.onnx`` + ``out/manifest.json``; returns the manifest."""
    if not isinstance(cm, Countermeasure):
        cm = load_source_cm(cm, w2v2_source)
    out = prepare_out_dir(out)
    path = export_graph(cm, out / ENGINE_FILES["onnx"], opset)
    verification = verify_graph(cm, path, tolerance) if verify else {}
    manifest = build_manifest(cm, path, opset, verification)
    write_manifest(out / MANIFEST_NAME, manifest)
    log.info("exported %s to %s (max |Δp| %s)", manifest.model_id, path, verification.get("max_abs_prob_diff"))
    return manifest
