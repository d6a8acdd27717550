"""``offline pull``: where its errors point, and the files it writes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from offline.cli import main


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """``umask(mask)`` sets the process umask for the test; the old one comes back afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _plain_file_mode(path: Path) -> int:
    path.write_bytes(b"")
    return path.stat().st_mode & 0o777


def test_failed_download_names_the_other_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("STREAMDET_PULL_SOURCE", raising=False)
    assert main(["pull", "codec_mellcnn", "--out", str(tmp_path / "cm"), "--source", "http://127.0.0.1:9"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "download failed" in lines[0] and "--source" in lines[0] and "STREAMDET_PULL_SOURCE" in lines[0]
    assert not (tmp_path / "cm").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_pulled_files_get_the_mode_of_a_normal_file_write(mask: int, umask, shared_dir: Path,
                                                          tmp_path: Path, capsys) -> None:
    umask(mask)
    source = shared_dir / "codecfake" / "pretrained"
    assert main(["pull", "codec_mellcnn", "--out", str(tmp_path / "cm"), "--source", str(source)]) == 0
    expected = _plain_file_mode(tmp_path / "plain")
    assert expected == 0o666 & ~mask
    assert {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "cm").iterdir()} == {
        "model.safetensors": expected, "manifest.json": expected}
