"""Choose the scoring backend from what ``--engine`` points at.

==========================================  ==========================================
``--engine``                                backend
==========================================  ==========================================
CM directory (``manifest.json`` of a CM)    torch (``TorchScorer``)
``model.onnx`` or an ONNX engine directory  ONNX Runtime (``OnnxScorer``), CPU or CUDA
``model.plan`` or a TensorRT engine dir     TensorRT (``TensorRTScorer``), CUDA only
``triton://HOST:PORT/MODEL[/VERSION]``      remote Triton server (``TritonScorer``)
==========================================  ==========================================

Engine files are read together with the ``manifest.json`` beside them. When the caller passes its
``sample_rate`` and ``window_samples``, a model whose input contract differs is refused here.
"""

from __future__ import annotations

import json
from pathlib import Path

from streamdet.errors import ManifestError
from streamdet.manifest import ENGINE_FILES, MANIFEST_NAME
from streamdet.scoring.base import Scorer

PULL_HINT = (
    "get a CM with `offline pull codec_mellcnn --out engines/codec_mellcnn` "
    "(or `offline import-checkpoint FILE --out DIR`) and pass that directory to --engine"
)
ONNX_SUFFIXES = (".onnx",)
PLAN_SUFFIXES = (".plan", ".engine", ".trt")
TRITON_SCHEME = "triton://"


def _manifest_kind(directory: Path) -> tuple[str, dict[str, object]]:
    """The ``format`` of the manifest in ``directory`` and its raw JSON."""
    try:
        data = json.loads((directory / MANIFEST_NAME).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{directory / MANIFEST_NAME}: unreadable manifest ({exc})") from exc
    return str(data.get("format", "")), data


def _open(engine: str | Path, device: str, w2v2_source: str | None, max_batch: int,
          threads: int | None = None, workers: int = 1, trust_unhashed: bool = False) -> Scorer:
    text = str(engine)
    if text.startswith(TRITON_SCHEME):
        from streamdet.scoring.triton_scorer import TritonScorer

        return TritonScorer(text, max_batch=max_batch)
    path = Path(engine)
    if path.is_file() and path.suffix in ONNX_SUFFIXES:
        from streamdet.scoring.onnx_scorer import OnnxScorer

        return OnnxScorer(path, device=device, max_batch=max_batch, threads=threads)
    if path.is_file() and path.suffix in PLAN_SUFFIXES:
        from streamdet.scoring.tensorrt_scorer import TensorRTScorer

        return TensorRTScorer(path, device="cuda" if device == "auto" else device, max_batch=max_batch)
    if path.name == MANIFEST_NAME and path.is_file():
        return _open(path.parent, device, w2v2_source, max_batch, threads, workers, trust_unhashed)
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        kind, data = _manifest_kind(path)
        if kind == "streamdet-cm":
            from streamdet.scoring.torch_scorer import TorchScorer

            return TorchScorer(path, device=device, w2v2_source=w2v2_source, max_batch=max_batch,
                               threads=threads, workers=workers, trust_unhashed=trust_unhashed)
        if kind == "streamdet-engine" and data.get("engine") in ENGINE_FILES:
            file = str(data.get("file") or ENGINE_FILES[str(data["engine"])])
            return _open(path / file, device, w2v2_source, max_batch, threads, workers)
        raise ManifestError(f"{path / MANIFEST_NAME}: not a CM or a local engine (format {kind!r})")
    if path.is_dir() and (path / "config.pbtxt").is_file():
        raise ManifestError(
            f"{path} is a Triton model directory: serve its repository with tritonserver and pass "
            f"--engine {TRITON_SCHEME}HOST:PORT/{path.name}"
        )
    if not path.exists():
        raise ManifestError(f"engine {engine} does not exist; {PULL_HINT}")
    raise ManifestError(f"don't know how to score with {engine}; {PULL_HINT}")


def open_scorer(
    engine: str | Path,
    device: str = "auto",
    w2v2_source: str | None = None,
    max_batch: int = 64,
    *,
    sample_rate: int | None = None,
    window_samples: int | None = None,
    threads: int | None = None,
    workers: int = 1,
    trust_unhashed: bool = False,
) -> Scorer:
    """A scorer for ``engine`` (see the table above); checks the input contract when given one.
    ``threads``: intra-op threads (torch, ONNX Runtime); ``workers``: see ``TorchScorer``;
    ``trust_unhashed``: load a CM whose manifest has no ``weights_sha256`` (see ``streamdet.cm``)."""
    scorer = _open(engine, device, w2v2_source, max_batch, threads, workers, trust_unhashed)
    if sample_rate is not None or window_samples is not None:
        try:
            scorer.contract.check_compatible(
                sample_rate if sample_rate is not None else scorer.contract.sample_rate,
                window_samples if window_samples is not None else scorer.contract.window_samples,
            )
        except ManifestError as exc:
            scorer.close()
            raise ManifestError(f"{engine}: {exc}") from exc
    return scorer
