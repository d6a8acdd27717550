"""Fetch a released CM, verify its pinned sha256 and import it into streamdet's format.

The source is the authors' repository by default. It can be any URL prefix or a local folder
laid out like ``<source>/<name>/anti-spoofing_feat_model.pt`` (``--source`` or
``STREAMDET_PULL_SOURCE``): tests and air-gapped machines pull from a local mirror.
"""

from __future__ import annotations

import os
from pathlib import Path

from offline.checkpoint import import_checkpoint
from offline.download import download
from offline.releases import CHECKPOINT_FILE, RELEASE_URL, RELEASES
from streamdet.errors import CheckpointError
from streamdet.manifest import CMManifest

SOURCE_ENV = "STREAMDET_PULL_SOURCE"


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "streamdet" / "releases"


def pull(name: str, out: Path, source: str | None = None, cache: Path | None = None) -> CMManifest:
    """Fetch, verify and import the released CM ``name`` into the CM directory ``out``."""
    if name not in RELEASES:
        raise CheckpointError(f"unknown released CM {name!r}; known: {', '.join(RELEASES)}")
    release = RELEASES[name]
    source = source or os.environ.get(SOURCE_ENV) or RELEASE_URL
    if "://" in source:
        cached = (cache or default_cache()) / name / CHECKPOINT_FILE
        checkpoint = download(f"{source.rstrip('/')}/{name}/{CHECKPOINT_FILE}", cached, release.sha256)
    else:
        checkpoint = Path(source) / name / CHECKPOINT_FILE
        if not checkpoint.is_file():
            raise CheckpointError(f"{checkpoint}: not found in the local source {source}")
    return import_checkpoint(checkpoint, out, name=name, trained_on=release.trained_on,
                             expected_sha256=release.sha256)
