"""Score files in the authors' format: one ``name score label`` line per utterance.

``score`` is the probability of bona fide (softmax(logits)[:, 0], paper recipe §5). Labels are read as
real/fake/bonafide/spoof (any word :func:`offline.datasets.parse_label` knows) and always written as
``real``/``fake``, as the authors' Codecfake and ALM-ADD result files are. Scores are written with
``repr`` precision so that a file read back gives exactly the same floats, hence the same EER.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from offline.datasets import BONAFIDE, SPOOF, folder_key, parse_label
from streamdet.errors import DatasetError

# Released score files named after the Codecfake test conditions, mapped to the paper's columns.
_RELEASED_CONDITIONS = {"19LA": "19LA", "ITW": "ITW", "L1": "A03", "L2": "A04"}
# ALM-ADD sources (label-file suffixes of github.com/xieyuankun/ALM-ADD) → the paper's condition.
ALM_ADD_CONDITIONS = {
    "AudioLM": "A01",
    "AudioLM_music": "A02",
    "speechx": "A05",
    "UniAudio": "A06",
    "lauragpt": "A07",
    "ELLAV": "A08",
    "HAM_TTS": "A09",
    "RALL-E": "A10",
    "NaturalSpeech3": "A11",
    "VALL-E2": "A12",
}
_ALM_BY_KEY = {folder_key(name): condition for name, condition in ALM_ADD_CONDITIONS.items()}
_LABEL_WORDS = {BONAFIDE: "real", SPOOF: "fake"}


@dataclass(frozen=True)
class ScoreFile:
    """The contents of one score file; ``labels`` 0 = bona fide, 1 = spoof."""

    names: tuple[str, ...]
    scores: np.ndarray
    labels: np.ndarray


def read_scores(path: Path) -> ScoreFile:
    """Read a ``name score label`` file; blank lines are skipped, anything else malformed raises."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"score file not found: {path}")
    names: list[str] = []
    scores: list[float] = []
    labels: list[int] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3:
                raise DatasetError(f"{path}:{number}: expected 'name score label', got {line.strip()!r}")
            name, score_text, word = fields
            try:
                score = float(score_text)
                label = parse_label(word)
            except ValueError as error:
                raise DatasetError(f"{path}:{number}: {error}") from None
            if math.isnan(score):
                raise DatasetError(f"{path}:{number}: score is NaN")
            names.append(name)
            scores.append(score)
            labels.append(label)
    if not names:
        raise DatasetError(f"score file is empty: {path}")
    return ScoreFile(tuple(names), np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64))


def write_scores(path: Path, names: Sequence[str], scores: npt.ArrayLike, labels: npt.ArrayLike) -> None:
    """Write a score file; the file appears only once complete (written beside it, then renamed)."""
    path = Path(path)
    score_list = np.asarray(scores, dtype=np.float64).reshape(-1).tolist()
    label_list = np.asarray(labels).reshape(-1).tolist()
    if not len(names) == len(score_list) == len(label_list):
        raise ValueError(
            f"{len(names)} names, {len(score_list)} scores and {len(label_list)} labels differ in length"
        )
    lines = []
    for name, score, label in zip(names, score_list, label_list, strict=True):
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"utterance name {name!r} is empty or contains whitespace")
        if label not in _LABEL_WORDS:
            raise ValueError(f"label of {name!r} must be 0 (real) or 1 (fake), got {label!r}")
        lines.append(f"{name} {score!r} {_LABEL_WORDS[label]}\n")
    partial = path.with_name(path.name + ".part")
    partial.write_text("".join(lines), encoding="utf-8")
    partial.replace(path)


def score_file_condition(path: Path | str) -> str:
    """The paper's column for a released score file name.

    ``19LA_result.txt`` → 19LA, ``ITW_result.txt`` → ITW, ``L1_result.txt`` → A03, ``L2_result.txt``
    → A04; ALM-ADD result files named after their source (``AudioLM.txt`` → A01, ``lauragpt.txt`` →
    A07, ...; case and separators ignored) or after their label file (``A07-lauragpt.txt`` → A07).
    Anything else: the file's stem without the authors' ``_result`` suffix (``C1_result.txt`` → C1).
    """
    stem = Path(path).stem
    base = stem.removesuffix("_result")
    if base in _RELEASED_CONDITIONS:
        return _RELEASED_CONDITIONS[base]
    labelled = re.fullmatch(r"(A\d{2})-.+", base)
    if labelled:
        return labelled.group(1)
    return _ALM_BY_KEY.get(folder_key(base), base)
