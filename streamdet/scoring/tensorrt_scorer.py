"""TensorRT scorer: a ``model.plan`` built by ``offline export --format tensorrt``, on one CUDA GPU.

TensorRT 10's name-based API: ``set_input_shape``, ``set_tensor_address`` and ``execute_async_v3``.
Input and output buffers are torch CUDA tensors and the stream is a ``torch.cuda.Stream``, so no
pycuda is needed. Untested in this repository's CI (TensorRT cannot be installed there): the pure
helpers below (version and GPU checks, batch chunking) are unit-tested, the rest runs on GPU hosts.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from streamdet.errors import ManifestError
from streamdet.manifest import BatchProfile, EngineManifest
from streamdet.scoring.base import Scorer

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'streamdet[tensorrt]' (TensorRT 10) on a machine with an NVIDIA GPU"


def major_minor(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


def check_plan_compatible(manifest: EngineManifest, trt_version: str, gpu_name: str) -> None:
    """Refuse a plan this runtime cannot run: another engine kind, TensorRT release or GPU model."""
    if manifest.engine != "tensorrt" or manifest.tensorrt is None:
        raise ManifestError(f"{manifest.name}: the manifest describes a {manifest.engine} engine, not a TensorRT plan")
    built = manifest.tensorrt
    if major_minor(built.version) != major_minor(trt_version):
        raise ManifestError(
            f"{manifest.name}: plan built with TensorRT {built.version}, this is TensorRT {trt_version}; "
            "plans are not portable across releases: rebuild it with `offline export --format tensorrt`"
        )
    if built.gpu_name != gpu_name:
        raise ManifestError(
            f"{manifest.name}: plan built for {built.gpu_name}, this GPU is {gpu_name}; "
            "rebuild it on this GPU with `offline export --format tensorrt`"
        )


def batch_chunks(count: int, profile: BatchProfile, max_batch: int) -> list[tuple[int, int, int]]:
    """Split ``count`` windows into (start, stop, run_size) calls that fit the profile.

    Each call holds at most min(profile.max, max_batch) windows; a call smaller than profile.min is
    padded (with silence) up to it, and the padding's scores are dropped.
    """
    step = max(1, min(profile.max, max_batch))
    chunks = []
    for start in range(0, count, step):
        stop = min(count, start + step)
        chunks.append((start, stop, max(stop - start, profile.min)))
    return chunks


class TensorRTScorer(Scorer):
    """Runs a TensorRT plan; the manifest beside it names the tensors and the batch profile."""

    def __init__(self, path: str | Path, device: str = "cuda", max_batch: int = 64, verify_hash: bool = True) -> None:
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise ManifestError(f"{path} is a TensorRT plan but TensorRT is not installed: {INSTALL_HINT}") from exc
        import torch

        if device == "auto":
            device = "cuda"
        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise ManifestError(f"{path}: a TensorRT plan runs on a CUDA GPU, not on {device!r}")
        self.path = Path(path)
        self.device = torch.device(device)
        manifest = EngineManifest.beside(self.path)
        check_plan_compatible(manifest, trt.__version__, torch.cuda.get_device_name(self.device))
        if verify_hash:
            manifest.verify_file(self.path)
        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ManifestError(f"{self.path}: TensorRT could not deserialise the plan")
        self._dtypes = self._check_io(trt, manifest)
        self.context = self.engine.create_execution_context()
        with torch.cuda.device(self.device):
            self.stream = torch.cuda.Stream(device=self.device)
        self.manifest = manifest
        self.contract = manifest
        self.model_id = manifest.model_id
        assert manifest.tensorrt is not None
        self.profile = manifest.tensorrt.profile
        self.max_batch = min(max_batch, self.profile.max)
        self._lock = threading.Lock()
        log.info("TensorRT scorer %s on %s, batch %s..%s", self.model_id, manifest.tensorrt.gpu_name,
                 self.profile.min, self.profile.max)

    def _check_io(self, trt: object, manifest: EngineManifest) -> dict[str, object]:
        """Map each I/O tensor to its torch dtype; refuse a plan whose tensors differ from the manifest."""
        torch = self._torch
        to_torch = {
            "FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16,
            "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool,
        }
        engine = self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]  # type: ignore[attr-defined]
        if inputs != [manifest.input_name]:
            raise ManifestError(f"{self.path}: plan inputs {inputs}, manifest says {[manifest.input_name]}")
        missing = [n for n in manifest.output_names if n not in names]
        if missing:
            raise ManifestError(f"{self.path}: plan lacks outputs {missing} (has {names})")
        window = tuple(engine.get_tensor_shape(manifest.input_name))[-1]
        if window != manifest.window_samples:
            raise ManifestError(f"{self.path}: plan input takes {window} samples, manifest says {manifest.window_samples}")
        return {n: to_torch[engine.get_tensor_dtype(n).name] for n in names}

    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        windows = self.check_windows(windows)
        scores = [self._run(windows[start:stop], size) for start, stop, size in
                  batch_chunks(len(windows), self.profile, self.max_batch)]
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    def _run(self, chunk: np.ndarray, size: int) -> np.ndarray:
        """One execute_async_v3 call on ``size`` windows (``chunk`` padded with silence)."""
        torch = self._torch
        manifest = self.manifest
        count = len(chunk)
        if size > count:
            chunk = np.concatenate([chunk, np.zeros((size - count, chunk.shape[1]), dtype=np.float32)])
        with self._lock, torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            host = torch.from_numpy(np.ascontiguousarray(chunk))
            x = host.to(self.device, non_blocking=False).to(self._dtypes[manifest.input_name])
            self.context.set_input_shape(manifest.input_name, tuple(x.shape))
            self.context.set_tensor_address(manifest.input_name, x.data_ptr())
            outputs = {}
            for name in manifest.output_names:
                shape = tuple(self.context.get_tensor_shape(name))
                outputs[name] = torch.empty(shape, dtype=self._dtypes[name], device=self.device)
                self.context.set_tensor_address(name, outputs[name].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"{self.path}: TensorRT execution failed")
            prob = outputs[manifest.prob_name].float().reshape(-1)[:count].cpu()
            self.stream.synchronize()
        return prob.numpy()

    def close(self) -> None:
        self.context = None
        self.engine = None
