"""Shared fixtures.

Reference-data tests read the authors' checkpoints, scores and audio from the folder named by
``STREAMDET_REFERENCE_DATA`` (``.ci/run`` points it at ``../shared``). Without it they skip, so a
fresh clone passes its own tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REFERENCE_ENV = "STREAMDET_REFERENCE_DATA"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    root = os.environ.get(REFERENCE_ENV)
    if not root:
        pytest.skip(f"reference data not configured: set {REFERENCE_ENV} to the shared/ folder")
    path = Path(root)
    if not (path / "codecfake").is_dir():
        pytest.fail(f"{REFERENCE_ENV}={root} does not hold the reference data (no codecfake/ inside)")
    return path


@pytest.fixture(scope="session")
def released_checkpoint(shared_dir: Path):
    """Path of one released checkpoint, by CM name (e.g. ``codec_mellcnn``)."""

    def path(name: str) -> Path:
        return shared_dir / "codecfake" / "pretrained" / name / "anti-spoofing_feat_model.pt"

    return path
