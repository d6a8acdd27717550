"""Choose the scoring backend from what ``--engine`` points at."""

from __future__ import annotations

from pathlib import Path

from streamdet.errors import ManifestError
from streamdet.manifest import MANIFEST_NAME
from streamdet.scoring.base import Scorer

PULL_HINT = (
    "get a CM with `offline pull codec_mellcnn --out engines/codec_mellcnn` "
    "(or `offline import-checkpoint FILE --out DIR`) and pass that directory to --engine"
)


def open_scorer(engine: str | Path, device: str = "auto", w2v2_source: str | None = None,
                max_batch: int = 64) -> Scorer:
    """A scorer for a CM directory (torch). Engine formats register further branches here."""
    path = Path(engine)
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        from streamdet.scoring.torch_scorer import TorchScorer

        return TorchScorer(path, device=device, w2v2_source=w2v2_source, max_batch=max_batch)
    if path.name == MANIFEST_NAME and path.is_file():
        return open_scorer(path.parent, device, w2v2_source, max_batch)
    if not path.exists():
        raise ManifestError(f"engine {engine} does not exist; {PULL_HINT}")
    raise ManifestError(f"don't know how to score with {engine}; {PULL_HINT}")
