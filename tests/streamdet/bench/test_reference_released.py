"""The comparison with the authors' loop on their released CMs (needs ../shared): streamdet's fast
scorer gives the same bona fide probabilities within 1e-4."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamdet.cli import main

pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def imported(released_checkpoint, tmp_path_factory):
    from offline.checkpoint import import_checkpoint

    def cm_dir(name: str) -> Path:
        directory = tmp_path_factory.mktemp(name)
        import_checkpoint(released_checkpoint(name), directory)
        return directory

    return cm_dir


def test_released_mel_lcnn_agrees_on_alm_clips(imported, shared_dir: Path, tmp_path: Path):
    clips = sorted((shared_dir / "alm-add" / "audio").rglob("*.wav"))[:4]
    out = tmp_path / "mel.json"
    assert main(["bench", "--compare-reference", "--arch", "mel_lcnn", "--engine", str(imported("codec_mellcnn")),
                 "--audio", *map(str, clips), "--windows", "4", "--batch", "2", "--repeats", "1",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["agree"] and report["pair"]["backend_weights"].endswith("@" + report["pair"]["weights_sha256"][:12] + ")")


def test_released_w2v2_aasist_agrees_through_a_whole_xlsr(imported, tiny_whole_xlsr_dir: Path, tmp_path: Path):
    out = tmp_path / "w2v2.json"
    assert main(["bench", "--compare-reference", "--arch", "w2v2_aasist", "--engine",
                 str(imported("codec_w2v2aasist")), "--w2v2-source", str(tiny_whole_xlsr_dir), "--windows", "2",
                 "--repeats", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["agree"]
