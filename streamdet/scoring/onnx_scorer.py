"""ONNX Runtime scorer: an exported engine (``model.onnx`` + ``manifest.json``) on CPU or CUDA."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from streamdet.errors import ManifestError
from streamdet.manifest import EngineManifest
from streamdet.scoring.base import Scorer

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def choose_providers(device: str, available: list[str]) -> list[str]:
    """ONNX Runtime providers for ``device`` (auto | cpu | cuda); cuda without the CUDA provider is an error."""
    if device == "cpu":
        return [CPU_PROVIDER]
    if device in ("cuda", "gpu") or device.startswith("cuda:"):
        if CUDA_PROVIDER not in available:
            raise ManifestError(
                f"--device {device}: this onnxruntime has no CUDA provider (available: {', '.join(available)}); "
                "install onnxruntime-gpu"
            )
        return [CUDA_PROVIDER, CPU_PROVIDER]
    if device == "auto":
        return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in available else [CPU_PROVIDER]
    raise ManifestError(f"unknown device {device!r} (auto, cpu or cuda)")


def check_session_io(session: object, manifest: EngineManifest, where: str) -> None:
    """Refuse a graph whose input or outputs differ from what its manifest promises."""
    inputs = {i.name: i for i in session.get_inputs()}  # type: ignore[attr-defined]
    outputs = {o.name for o in session.get_outputs()}  # type: ignore[attr-defined]
    if manifest.input_name not in inputs:
        raise ManifestError(f"{where}: no input {manifest.input_name!r} (graph has {sorted(inputs)})")
    shape = inputs[manifest.input_name].shape
    if len(shape) != 2 or shape[1] != manifest.window_samples:
        raise ManifestError(
            f"{where}: input {manifest.input_name} has shape {shape}, the manifest says (batch, {manifest.window_samples})"
        )
    if isinstance(shape[0], int):
        # The batcher sends 1 to max_batch windows per call: a graph exported with a fixed batch
        # would fail at the first batch of another size, mid-service.
        raise ManifestError(f"{where}: input {manifest.input_name} has a fixed batch of {shape[0]}; "
                            "export it with a dynamic batch axis (offline export)")
    missing = [name for name in manifest.output_names if name not in outputs]
    if missing:
        raise ManifestError(f"{where}: outputs {missing} missing (graph has {sorted(outputs)})")


class OnnxScorer(Scorer):
    """Runs ``model.onnx`` with ONNX Runtime; the manifest beside it says what the graph is."""

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        max_batch: int = 64,
        threads: int | None = None,
        verify_hash: bool = True,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        manifest = EngineManifest.beside(self.path)
        if manifest.engine != "onnx":
            raise ManifestError(f"{self.path}: its manifest describes a {manifest.engine} engine, not ONNX")
        if verify_hash:
            manifest.verify_file(self.path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.providers = choose_providers(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=self.providers)
        except Exception as exc:  # onnxruntime's InvalidProtobuf, InvalidGraph, Fail... share no base
            detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise ManifestError(f"{self.path}: not a usable ONNX graph ({detail})") from exc
        check_session_io(self.session, manifest, str(self.path))
        self.manifest = manifest
        self.contract = manifest
        self.model_id = manifest.model_id
        self.max_batch = max_batch
        log.info("ONNX Runtime scorer %s on %s", self.model_id, self.session.get_providers()[0])

    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        windows = self.check_windows(windows)
        scores = []
        for start in range(0, len(windows), self.max_batch):
            chunk = np.ascontiguousarray(windows[start : start + self.max_batch])
            (prob,) = self.session.run([self.manifest.prob_name], {self.manifest.input_name: chunk})
            scores.append(np.asarray(prob, dtype=np.float32).reshape(-1))
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
