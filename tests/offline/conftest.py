"""Fixtures shared by the offline tests: a tiny synthetic field-data folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

HEADER = "relpath\tlabel\tsystem_or_source\tspeaker\tlanguage\toriginal_rate\tseconds\trepo\tcommit\tpath_in_repo\tlicense\tevidence\n"


def _make_field_data(root: Path, real: int = 2, fake: int = 2, clips: int = 1, seconds: float = 1.0) -> Path:
    rows = []
    rng = np.random.default_rng(0)
    for kind, count in (("real", real), ("fake", fake)):
        for g in range(count):
            group = f"{kind}src{g}"
            for c in range(clips):
                rel = f"{kind}/{group}/clip{c}.flac"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                audio = 0.1 * rng.standard_normal(int(seconds * 16000)) if kind == "fake" else \
                    0.2 * np.sin(2 * np.pi * (150 + 20 * g) * np.arange(int(seconds * 16000)) / 16000)
                sf.write(root / rel, audio.astype(np.float32), 16000, subtype="PCM_16")
                rows.append(f"{rel}\t{kind}\t{group}\tunknown\ten\t16000\t{seconds}\trepo\tc\tp\tCC0\tev\n")
    (root / "sources.tsv").write_text(HEADER + "".join(rows), encoding="utf-8")
    return root



@pytest.fixture()
def make_field_data() -> Callable[..., Path]:
    """Write a field-data-like folder (``sources.tsv`` + FLAC clips): tones for real, noise for fake."""
    return _make_field_data
