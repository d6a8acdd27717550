"""Confusion-matrix figure: a valid PNG comes out."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from offline.plots import plot_confusion_matrix

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    # The IHDR chunk comes first: length, type, then width and height as big-endian uint32.
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_writes_png(tmp_path: Path) -> None:
    # Fig. 4(a) of the paper: W2V2-AASIST trained on 19LA, tested on A01.
    path = plot_confusion_matrix(
        np.array([[0.4706, 0.5294], [0.3750, 0.6250]]), tmp_path / "fig" / "a01.png", "19LA -> A01"
    )
    assert path == tmp_path / "fig" / "a01.png"
    width, height = _png_size(path)
    assert width > 100 and height > 100
    assert path.stat().st_size > 1000


def test_nan_row_still_plots(tmp_path: Path) -> None:
    path = plot_confusion_matrix(
        np.array([[np.nan, np.nan], [0.0, 1.0]]), tmp_path / "only_fake.png", "fake only"
    )
    assert _png_size(path)[0] > 0


def test_rejects_wrong_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2x2"):
        plot_confusion_matrix(np.eye(3), tmp_path / "x.png", "bad")
    assert not (tmp_path / "x.png").exists()
