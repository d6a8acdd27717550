"""The embedded scorer: a CM run by PyTorch on CPU or CUDA, with the fast paths measured in docs/benchmarks.md.

Fast paths (each keeps P(bona fide) within 1e-4 of the plain fp32 CM on CPU; fp16 is CUDA only):

- ``torch.inference_mode`` and batching across streams (the caller passes (batch, 64600) windows);
- ``threads``: torch's intra-op thread count (a process-wide setting; None leaves torch's default);
- ``workers``: score the parts of a batch concurrently in that many threads (torch releases the GIL),
  each with ``threads`` intra-op threads (default: the cores divided among the workers). On a small
  CPU shared with ingest, two single-threaded workers keep both cores busy without OpenMP's
  spin-waiting, which collapses when another process holds a core (docs/benchmarks.md);
- channels-last backends on CPU (the LCNN; the architecture's ``channels_last``): oneDNN's
  convolutions and max-pooling run 1.5-2x faster on NHWC activations than on NCHW ones
  (docs/benchmarks.md); exact up to float rounding;
- ``trace`` on CPU (architectures marked ``traceable``; the CPU default): the CM's forward pass
  (front-end, layout conversion, backend, softmax) traced with ``torch.jit.trace``, once per batch
  size on first use. Eager mode returns to Python after every operator and must re-take the GIL,
  which the service's event loop holds often: about 40 voluntary context switches per batch of two
  windows against 4 traced, and 69 ms wall per batch instead of 78 in the service. Not frozen:
  ``torch.jit.freeze`` folds batch norm into the convolutions (other rounding) and measured no faster;
- on CUDA: fp16 autocast for every backend and the front-ends marked ``fp16_safe`` (the mel
  front-end stays fp32: its power spectrum can exceed fp16's range), and optionally CUDA graphs,
  one per batch size bucket (powers of two up to ``max_batch``; a smaller batch is padded with
  silence up to its bucket).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from streamdet import architectures
from streamdet.cm import Countermeasure, load_cm
from streamdet.errors import ConfigError
from streamdet.scoring.base import Scorer


def graph_batch_size(count: int, max_batch: int) -> int:
    """The CUDA graph bucket for ``count`` windows: the smallest power of two >= count, capped at max_batch."""
    if count < 1:
        raise ValueError("a batch holds at least one window")
    size = 1
    while size < count:
        size *= 2
    return min(size, max_batch)


class TorchScorer(Scorer):
    """Scores windows with a ``Countermeasure``; see the module docstring for the options."""

    def __init__(
        self,
        cm_dir: str | Path,
        device: str = "auto",
        w2v2_source: str | None = None,
        max_batch: int = 64,
        *,
        threads: int | None = None,
        workers: int = 1,
        channels_last: bool | None = None,
        fp16: bool | None = None,
        cuda_graphs: bool = False,
        trace: bool | None = None,
        trust_unhashed: bool = False,
    ) -> None:
        device = resolve_device(device)
        cm = load_cm(cm_dir, w2v2_source=w2v2_source, device=device, trust_unhashed=trust_unhashed)
        self._setup(cm, max_batch, threads, workers, channels_last, fp16, cuda_graphs, trace)

    @classmethod
    def from_cm(
        cls,
        cm: Countermeasure,
        max_batch: int = 64,
        *,
        threads: int | None = None,
        workers: int = 1,
        channels_last: bool | None = None,
        fp16: bool | None = None,
        cuda_graphs: bool = False,
        trace: bool | None = None,
    ) -> TorchScorer:
        """A scorer for an in-memory CM (already on its device), e.g. one with random weights."""
        scorer = cls.__new__(cls)
        scorer._setup(cm.eval(), max_batch, threads, workers, channels_last, fp16, cuda_graphs, trace)
        return scorer

    def _setup(
        self,
        cm: Countermeasure,
        max_batch: int,
        threads: int | None,
        workers: int,
        channels_last: bool | None,
        fp16: bool | None,
        cuda_graphs: bool,
        trace: bool | None,
    ) -> None:
        self.cm = cm
        self.device = next(iter(cm.backend.parameters())).device
        self.contract = cm.manifest
        self.model_id = cm.manifest.model_id
        self.max_batch = max_batch
        on_cuda = self.device.type == "cuda"
        if workers < 1:
            raise ConfigError("workers must be at least 1")
        if workers > 1 and on_cuda:
            raise ConfigError("workers split CPU batches; on CUDA use larger batches instead")
        if workers > 1 and not threads:
            threads = max(1, torch.get_num_threads() // workers)
        if threads:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="torch-scorer") if workers > 1 else None
        # fp16 on GPU only: on CPU half precision is slower and changes scores for nothing.
        self.use_fp16 = on_cuda if fp16 is None else bool(fp16)
        if self.use_fp16 and not on_cuda:
            raise ConfigError("fp16 scoring is for CUDA devices; on CPU it is slower and less exact")
        architecture = architectures.get(cm.manifest.architecture)
        self._fp16_frontend = self.use_fp16 and architecture.frontend.fp16_safe
        if channels_last is None:
            channels_last = not on_cuda and architecture.channels_last
        self.channels_last = bool(channels_last)
        if self.channels_last:
            cm.backend.to(memory_format=torch.channels_last)
        if cuda_graphs and not on_cuda:
            raise ConfigError("CUDA graphs need a CUDA device")
        self._graphs: dict[int, _CapturedBatch] | None = {} if cuda_graphs else None
        self.trace = resolve_trace(trace, architecture, on_cuda)
        self._traced: dict[int, torch.jit.ScriptModule] = {}
        self._lock = threading.Lock()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, samples) on the device → fp32 logits (batch, 2)."""
        kind = self.device.type
        with torch.autocast(kind, dtype=torch.float16, enabled=self._fp16_frontend, cache_enabled=False):
            features = self.cm.frontend(x)
        if self.channels_last:
            features = features.contiguous(memory_format=torch.channels_last)
        with torch.autocast(kind, dtype=torch.float16, enabled=self.use_fp16, cache_enabled=False):
            logits, _hidden = self.cm.backend(features)
        return logits.float()

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self._logits(x), dim=-1)[:, 0]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """P(bona fide) of (batch, samples): the batch size's trace when tracing, else eager."""
        if not self.trace:
            return self._probabilities(x)
        return self._traced_for(len(x))(x)

    def _traced_for(self, size: int) -> torch.jit.ScriptModule:
        """The trace for ``size`` windows, traced on first use; the lock only guards building it, so
        workers run their traces concurrently (a TorchScript module may be called from many threads)."""
        with self._lock:
            traced = self._traced.get(size)
            if traced is None:
                traced = self._traced[size] = trace_probabilities(self.cm, self._probabilities, size,
                                                                  self.contract.window_samples, self.device)
            return traced

    def _probabilities_in_worker(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():  # grad mode is per thread
            return self._forward(x)

    def _split_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The batch's parts scored concurrently: one part here, the others in the pool's threads."""
        assert self._pool is not None
        parts = torch.tensor_split(x, min(self.workers, len(x)))
        futures = [self._pool.submit(self._probabilities_in_worker, part) for part in parts[1:]]
        first = self._forward(parts[0])
        return torch.cat([first, *(future.result() for future in futures)])

    @torch.inference_mode()
    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        windows = self.check_windows(windows)
        scores = []
        for start in range(0, len(windows), self.max_batch):
            chunk = torch.from_numpy(windows[start:start + self.max_batch]).to(self.device)
            if self._graphs is not None:
                prob = self._replay(chunk)
            elif self._pool is not None and len(chunk) > 1:
                prob = self._split_probabilities(chunk)
            else:
                prob = self._forward(chunk)
            scores.append(prob.cpu().numpy())
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _replay(self, chunk: torch.Tensor) -> torch.Tensor:
        """Score through the CUDA graph of the chunk's bucket, capturing it on first use."""
        assert self._graphs is not None
        size = graph_batch_size(len(chunk), self.max_batch)
        with self._lock:
            captured = self._graphs.get(size)
            if captured is None:
                captured = self._graphs[size] = _CapturedBatch(self._probabilities, size, chunk.shape[1],
                                                               self.device)
            return captured.run(chunk)


class _Probabilities(nn.Module):
    """``fn`` (the scorer's eager ``_probabilities``) as a module owning the CM, so that tracing it
    records the CM's weights as the module's parameters (shared, not copied) instead of constants."""

    def __init__(self, cm: Countermeasure, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.cm = cm
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def trace_probabilities(cm: Countermeasure, fn: Callable[[torch.Tensor], torch.Tensor], size: int, samples: int,
                        device: torch.device) -> torch.jit.ScriptModule:
    """``fn`` over (size, samples) windows traced with ``torch.jit.trace``: the same operators, run in
    C++ without the GIL. The example input is silence: the traced operators do not depend on it."""
    # torch.jit.trace refuses inference tensors, and score_batch runs in inference mode.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # torch 2.x marks TorchScript deprecated: a DeprecationWarning at every trace, i.e. per batch size,
        # in the service's log. It still runs; its replacement torch.compile needs a C++ toolchain here.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r"`torch\.jit\.")
        example = torch.zeros((size, samples), dtype=torch.float32, device=device)
        # No check_trace: it traces again and runs the CM more times on the first batch of each size;
        # tests/streamdet/scoring/test_torch_scorer_trace.py compares traced with eager scores instead.
        return torch.jit.trace(_Probabilities(cm, fn), example, check_trace=False)


class _CapturedBatch:
    """One CUDA graph of ``fn`` over a static (size, samples) input buffer."""

    def __init__(self, fn, size: int, samples: int, device: torch.device) -> None:
        self.size = size
        self.input = torch.zeros((size, samples), dtype=torch.float32, device=device)
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):  # warm up: cuDNN/cuBLAS choose their kernels outside the capture
                fn(self.input)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = fn(self.input)

    def run(self, chunk: torch.Tensor) -> torch.Tensor:
        count = len(chunk)
        self.input[:count].copy_(chunk)
        if count < self.size:
            self.input[count:].zero_()
        self.graph.replay()
        return self.output[:count].clone()


def resolve_trace(trace: bool | None, architecture: architectures.Architecture, on_cuda: bool) -> bool:
    """None → trace on CPU when the architecture is ``traceable``; CUDA replays its graphs instead."""
    if trace is None:
        return not on_cuda and architecture.traceable
    if trace and on_cuda:
        raise ConfigError("trace is the CPU fast path; on CUDA use cuda_graphs")
    if trace and not architecture.traceable:
        raise ConfigError(f"trace: {architecture.name} CMs are not marked traceable (torch.jit.trace is "
                          f"not known to reproduce their scores); leave trace unset (auto) or off")
    return bool(trace)


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; a device that torch cannot use is a ConfigError."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N): {exc}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: no CUDA device is usable (torch {torch.__version__}, "
                              f"built for CUDA {torch.version.cuda or 'none'}); use --device cpu or auto")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return resolved
