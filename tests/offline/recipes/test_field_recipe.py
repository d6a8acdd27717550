"""The field list: every clip with its source/system and origin, shared files referenced in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from offline.cli import main
from offline.recipes.field import build_field_list, read_field_list, write_field_list
from streamdet.errors import DatasetError


def test_field_list_keeps_every_clip_s_group_and_origin(tmp_path: Path, make_field_data) -> None:
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


def test_field_command_writes_the_list_and_refuses_a_folder_without_sources(tmp_path: Path, capsys, make_field_data) -> None:
    field = make_field_data(tmp_path / "field-data")
    assert main(["data", "field", "--field-data", str(field), "--asterisk-root", str(tmp_path / "none"),
                 "--tts-root", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 0
    assert len(read_field_list(tmp_path / "out" / "field.tsv")) == 4
    assert "4 clips" in capsys.readouterr().out
    with pytest.raises(DatasetError, match="sources.tsv"):
        build_field_list(tmp_path / "none")
