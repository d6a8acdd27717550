"""The field list: every clip with its source/system and origin, shared files referenced in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from offline.cli import main
from offline.recipes.field import build_field_list, read_field_list, write_field_list
from streamdet.errors import DatasetError

HEADER = "relpath\tlabel\tsystem_or_source\tspeaker\tlanguage\toriginal_rate\tseconds\trepo\tcommit\tpath_in_repo\tlicense\tevidence\n"


def make_field_data(root: Path, real: int = 2, fake: int = 2, clips: int = 1, seconds: float = 1.0) -> Path:
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


def test_field_list_keeps_every_clip_s_group_and_origin(tmp_path: Path) -> None:
    field = make_field_data(tmp_path / "field-data", clips=2)
    asterisk = tmp_path / "asterisk"
    asterisk.mkdir()
    (asterisk / "asterisk-en.tsv").write_text("path\tlabel\tlanguage\tspeaker\tprompt\tseconds\ttext\n"
                                              "en/a.wav\treal\ten\tx\ta\t1.5\tA.\n", encoding="utf-8")
    clips, notes = build_field_list(field, asterisk, tmp_path / "no-tts", None)
    assert {(c.group, c.origin) for c in clips} == {("realsrc0", "field-data"), ("realsrc1", "field-data"),
                                                     ("fakesrc0", "field-data"), ("fakesrc1", "field-data"),
                                                     ("asterisk-en", "asterisk")}
    assert all(c.path.is_absolute() for c in clips), "lists reference the shared files where they are"
    assert any("tts-spoofs" in n for n in notes)
    path = write_field_list(tmp_path / "out" / "field.tsv", clips)
    assert read_field_list(path) == clips
    assert len({c.utt_id for c in clips}) == len(clips)


def test_field_command_writes_the_list_and_refuses_a_folder_without_sources(tmp_path: Path, capsys) -> None:
    field = make_field_data(tmp_path / "field-data")
    assert main(["data", "field", "--field-data", str(field), "--asterisk-root", str(tmp_path / "none"),
                 "--tts-root", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 0
    assert len(read_field_list(tmp_path / "out" / "field.tsv")) == 4
    assert "4 clips" in capsys.readouterr().out
    with pytest.raises(DatasetError, match="sources.tsv"):
        build_field_list(tmp_path / "none")
