"""Score files in the authors' format: round trip, label words, malformed lines, condition names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offline.scorefiles import read_scores, score_file_condition, write_scores
from streamdet.errors import StreamdetError


def test_read_mixed_label_words(tmp_path: Path) -> None:
    path = tmp_path / "ITW_result.txt"
    path.write_text("0 0.0018821912817656994 spoof\n1 0.5 bonafide\n\np1.wav 1e-07 real\nx 1 fake\n")
    scores = read_scores(path)
    assert scores.names == ("0", "1", "p1.wav", "x")
    np.testing.assert_array_equal(scores.scores, [0.0018821912817656994, 0.5, 1e-07, 1.0])
    np.testing.assert_array_equal(scores.labels, [1, 0, 0, 1])


def test_round_trip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    values = rng.random(50)
    values[0] = np.float32(0.9888535737991333)  # a float32 probability, as the CMs produce
    names = [f"utt_{i}.wav" for i in range(50)]
    labels = rng.integers(0, 2, 50)
    path = tmp_path / "out" / "A01.txt"
    path.parent.mkdir()
    write_scores(path, names, values, labels)
    back = read_scores(path)
    assert back.names == tuple(names)
    np.testing.assert_array_equal(back.scores, values)
    np.testing.assert_array_equal(back.labels, labels)
    assert path.read_text().splitlines()[0].split()[2] in ("real", "fake")
    assert not (tmp_path / "out" / "A01.txt.part").exists()


def test_write_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        write_scores(tmp_path / "s.txt", ["a"], [0.1, 0.2], [0, 1])
    with pytest.raises(ValueError, match="whitespace"):
        write_scores(tmp_path / "s.txt", ["a b"], [0.1], [0])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1 \\(fake\\)"):
        write_scores(tmp_path / "s.txt", ["a"], [0.1], [2])
    assert not (tmp_path / "s.txt").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a 0.1 real\nb 0.2\n", r"bad.txt:2: expected 'name score label'"),
        ("a 0.1 real\nb 0.2 fake extra\n", r"bad.txt:2: expected 'name score label'"),
        ("a high real\n", r"bad.txt:1: could not convert string to float"),
        ("a 0.1 real\n\nb 0.2 maybe\n", r"bad.txt:3: unknown label 'maybe'"),
        ("a nan real\n", r"bad.txt:1: score is NaN"),
        ("\n\n", r"score file is empty"),
    ],
)
def test_malformed_file_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(StreamdetError, match=message):
        read_scores(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StreamdetError, match="score file not found"):
        read_scores(tmp_path / "none.txt")


@pytest.mark.parametrize(
    ("name", "condition"),
    [
        ("scores/vocoder_mellcnn/19LA_result.txt", "19LA"),
        ("ITW_result.txt", "ITW"),
        ("L1_result.txt", "A03"),
        ("L2_result.txt", "A04"),
        ("alm-add/result/AudioLM.txt", "A01"),
        ("lauragpt.txt", "A07"),
        ("LauraGPT.txt", "A07"),
        ("HAM_TTS.txt", "A09"),
        ("HAM-TTS.txt", "A09"),
        ("RALL-E.txt", "A10"),
        ("AudioLM_music.txt", "A02"),
        ("VALL-E2.txt", "A12"),
        ("A11-NaturalSpeech3.txt", "A11"),
        ("C1_result.txt", "C1"),
        ("L3_result.txt", "L3"),
        ("my_scores.txt", "my_scores"),
    ],
)
def test_score_file_condition(name: str, condition: str) -> None:
    assert score_file_condition(Path(name)) == condition
