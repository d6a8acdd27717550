"""Dataset readers on small fixture trees, and on the shared ALM-ADD copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from offline.datasets import (
    Utterance,
    alm_add,
    asvspoof2019_la,
    codecfake,
    in_the_wild,
    list_file,
    parse_label,
)
from streamdet.errors import StreamdetError


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("word", "label"),
    [
        ("real", 0),
        ("bonafide", 0),
        ("bona-fide", 0),
        ("genuine", 0),
        ("Bonafide", 0),
        ("fake", 1),
        ("spoof", 1),
    ],
)
def test_parse_label(word: str, label: int) -> None:
    assert parse_label(word) == label


def test_parse_label_names_unknown_word() -> None:
    with pytest.raises(ValueError, match="'synthetic'"):
        parse_label("synthetic")


def test_utterance_is_frozen() -> None:
    utterance = Utterance("a", Path("a.wav"), 0)
    with pytest.raises(AttributeError):
        utterance.label = 1  # type: ignore[misc]


def _asvspoof_tree(root: Path) -> None:
    _write(
        root / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.dev.trl.txt",
        "LA_0069 LA_D_1047731 - - bonafide\nLA_0070 LA_D_2000001 - A05 spoof\n",
    )
    _touch(
        root / "ASVspoof2019_LA_dev" / "flac" / "LA_D_1047731.flac",
        root / "ASVspoof2019_LA_dev" / "flac" / "LA_D_2000001.flac",
    )


def test_asvspoof2019_la(tmp_path: Path) -> None:
    _asvspoof_tree(tmp_path)
    utterances = asvspoof2019_la(tmp_path, "dev")
    assert utterances == [
        Utterance("LA_D_1047731", tmp_path / "ASVspoof2019_LA_dev" / "flac" / "LA_D_1047731.flac", 0),
        Utterance("LA_D_2000001", tmp_path / "ASVspoof2019_LA_dev" / "flac" / "LA_D_2000001.flac", 1),
    ]


def test_asvspoof2019_la_missing_protocol_and_part(tmp_path: Path) -> None:
    _asvspoof_tree(tmp_path)
    with pytest.raises(StreamdetError, match="ASVspoof2019.LA.cm.train.trn.txt"):
        asvspoof2019_la(tmp_path, "train")
    with pytest.raises(ValueError, match="'test'"):
        asvspoof2019_la(tmp_path, "test")


def test_asvspoof2019_la_reports_missing_audio(tmp_path: Path) -> None:
    _asvspoof_tree(tmp_path)
    (tmp_path / "ASVspoof2019_LA_dev" / "flac" / "LA_D_2000001.flac").unlink()
    with pytest.raises(StreamdetError, match="1 of 2 audio files .* do not exist:\n  .*LA_D_2000001.flac"):
        asvspoof2019_la(tmp_path, "dev")
    assert len(asvspoof2019_la(tmp_path, "dev", check_audio=False)) == 2


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    _asvspoof_tree(tmp_path)
    protocol = tmp_path / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.dev.trl.txt"
    protocol.write_text("LA_0069 LA_D_1047731 - - bonafide\n\nLA_0070 LA_D_2000001 - A05\n")
    with pytest.raises(StreamdetError, match="ASVspoof2019.LA.cm.dev.trl.txt:3: expected at least 5 fields"):
        asvspoof2019_la(tmp_path, "dev")
    protocol.write_text("LA_0069 LA_D_1047731 - - maybe\n")
    with pytest.raises(StreamdetError, match="dev.trl.txt:1: unknown label 'maybe'"):
        asvspoof2019_la(tmp_path, "dev")


def test_in_the_wild(tmp_path: Path) -> None:
    _write(
        tmp_path / "meta.csv", 'file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,"Doe, Jane",bona-fide\n'
    )
    _touch(tmp_path / "0.wav", tmp_path / "1.wav")
    assert in_the_wild(tmp_path) == [
        Utterance("0", tmp_path / "0.wav", 1),
        Utterance("1", tmp_path / "1.wav", 0),
    ]


def test_in_the_wild_bad_header_and_label(tmp_path: Path) -> None:
    _write(tmp_path / "meta.csv", "name,speaker,kind\n0.wav,A,spoof\n")
    with pytest.raises(StreamdetError, match="header must name 'file' and 'label'"):
        in_the_wild(tmp_path)
    _write(tmp_path / "meta.csv", "file,speaker,label\n0.wav,A,spoof\n1.wav,B,other\n")
    _touch(tmp_path / "0.wav", tmp_path / "1.wav")
    with pytest.raises(StreamdetError, match="meta.csv:3: unknown label 'other'"):
        in_the_wild(tmp_path)


def test_in_the_wild_missing_meta(tmp_path: Path) -> None:
    with pytest.raises(StreamdetError, match="meta.csv"):
        in_the_wild(tmp_path)


def test_codecfake_train_and_test_conditions(tmp_path: Path) -> None:
    _write(tmp_path / "label" / "train.txt", "F01_p225_001.wav fake 1\np225_001.wav real 0\n")
    _write(tmp_path / "label" / "C3.txt", "p228_028.wav real 0\n")
    _touch(
        tmp_path / "train" / "F01_p225_001.wav",
        tmp_path / "train" / "p225_001.wav",
        tmp_path / "test" / "C3" / "p228_028.wav",
    )
    assert codecfake(tmp_path, "train") == [
        Utterance("F01_p225_001.wav", tmp_path / "train" / "F01_p225_001.wav", 1),
        Utterance("p225_001.wav", tmp_path / "train" / "p225_001.wav", 0),
    ]
    assert codecfake(tmp_path, "C3") == [
        Utterance("p228_028.wav", tmp_path / "test" / "C3" / "p228_028.wav", 0)
    ]


def test_codecfake_missing_label_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(StreamdetError, match="label.A1.txt"):
        codecfake(tmp_path, "A1")
    _write(tmp_path / "label" / "A1.txt", "x.wav fake 1\n")
    with pytest.raises(StreamdetError, match="audio folder not found: .*test.A1"):
        codecfake(tmp_path, "A1")
    with pytest.raises(ValueError, match="'C8'"):
        codecfake(tmp_path, "C8")


def _alm_tree(root: Path) -> None:
    _write(root / "label" / "A01-AudioLM.txt", "a_real.wav real\nb_fake.wav fake\n")
    # The folder differs from the label-file suffix in case and separator.
    _write(root / "label" / "A09-HAM_TTS.txt", "c_fake.wav fake\n")
    _touch(
        root / "audio" / "AudioLM" / "a_real.wav",
        root / "audio" / "AudioLM" / "b_fake.wav",
        root / "audio" / "ham-tts" / "c_fake.wav",
    )


def test_alm_add_matches_folders_loosely(tmp_path: Path) -> None:
    _alm_tree(tmp_path)
    conditions = alm_add(tmp_path)
    assert list(conditions) == ["A01", "A09"]
    assert conditions["A01"] == [
        Utterance("a_real.wav", tmp_path / "audio" / "AudioLM" / "a_real.wav", 0),
        Utterance("b_fake.wav", tmp_path / "audio" / "AudioLM" / "b_fake.wav", 1),
    ]
    assert conditions["A09"] == [Utterance("c_fake.wav", tmp_path / "audio" / "ham-tts" / "c_fake.wav", 1)]


def test_alm_add_missing_or_ambiguous_folder(tmp_path: Path) -> None:
    _alm_tree(tmp_path)
    _write(tmp_path / "label" / "A10-RALL-E.txt", "d_fake.wav fake\n")
    with pytest.raises(
        StreamdetError, match="A10-RALL-E.txt: no folder matches 'RALL-E'.*folders: AudioLM, ham-tts"
    ):
        alm_add(tmp_path)
    (tmp_path / "label" / "A10-RALL-E.txt").unlink()
    (tmp_path / "audio" / "HAM-TTS").mkdir()
    if (tmp_path / "audio" / "HAM-TTS").samefile(tmp_path / "audio" / "ham-tts"):
        pytest.skip("case-insensitive file system")
    with pytest.raises(StreamdetError, match="several folders match 'HAM_TTS'"):
        alm_add(tmp_path)


def test_alm_add_needs_label_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(StreamdetError, match="ALM-ADD label folder not found"):
        alm_add(tmp_path)
    (tmp_path / "label").mkdir()
    (tmp_path / "audio").mkdir()
    with pytest.raises(StreamdetError, match="no ALM-ADD label files"):
        alm_add(tmp_path)
    _write(tmp_path / "label" / "AudioLM.txt", "a.wav real\n")
    with pytest.raises(StreamdetError, match="AudioLM.txt: ALM-ADD label files are named"):
        alm_add(tmp_path)


def test_list_file_resolves_against_its_folder(tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    _touch(tmp_path / "audio" / "one clip.wav", tmp_path / "elsewhere.flac")
    absolute = tmp_path / "elsewhere.flac"
    _write(lists / "test.txt", f"../audio/one clip.wav real\n\n{absolute} spoof\n")
    assert list_file(lists / "test.txt") == [
        Utterance("../audio/one clip.wav", lists / ".." / "audio" / "one clip.wav", 0),
        Utterance(str(absolute), absolute, 1),
    ]


def test_list_file_errors(tmp_path: Path) -> None:
    with pytest.raises(StreamdetError, match="list file not found"):
        list_file(tmp_path / "absent.txt")
    _write(tmp_path / "bad.txt", "a.wav real\nlonely\n")
    _touch(tmp_path / "a.wav")
    with pytest.raises(StreamdetError, match="bad.txt:2: expected 'path label'"):
        list_file(tmp_path / "bad.txt")
    _write(tmp_path / "missing.txt", "a.wav real\n" + "".join(f"gone{i}.wav fake\n" for i in range(12)))
    with pytest.raises(StreamdetError, match="(?s)12 of 13 audio files.*gone0.wav.*and 2 more"):
        list_file(tmp_path / "missing.txt")


def test_shared_alm_add(shared_dir: Path) -> None:
    root = shared_dir / "alm-add"
    conditions = alm_add(root)
    assert set(conditions) == {"A01", "A07", "A09", "A10"}
    for condition, utterances in conditions.items():
        (label_file,) = (root / "label").glob(f"{condition}-*.txt")
        lines = [line for line in label_file.read_text().splitlines() if line.strip()]
        assert len(utterances) == len(lines), condition
        assert all(u.path.is_file() for u in utterances)
        assert {u.label for u in utterances} == {0, 1}, condition
    assert len(conditions["A01"]) == 76
