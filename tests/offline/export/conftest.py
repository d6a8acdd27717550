"""Fixtures for the export tests: random and released CMs, exported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def random_w2v2_aasist_cm(tmp_path_factory, tiny_xlsr_dir: Path) -> Path:
    from offline.export.random_cm import save_random_cm

    directory = tmp_path_factory.mktemp("random_w2v2_aasist_cm")
    save_random_cm(directory, "w2v2_aasist", name="random_w2v2_aasist", w2v2_source=str(tiny_xlsr_dir))
    return directory


@pytest.fixture(scope="session")
def mel_onnx_engine(random_mel_cm: Path, tmp_path_factory) -> Path:
    """The random Mel-LCNN exported through the command line (``offline export``)."""
    from offline.cli import main

    out = tmp_path_factory.mktemp("engines") / "random_mel-onnx"
    assert main(["export", str(random_mel_cm), "--format", "onnx", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def released_cm(released_checkpoint, tmp_path_factory):
    """``released_cm(name)``: a released checkpoint imported into a CM directory (cached)."""
    from offline.checkpoint import import_checkpoint

    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            directory = tmp_path_factory.mktemp(name)
            import_checkpoint(released_checkpoint(name), directory)
            cache[name] = directory
        return cache[name]

    return get
