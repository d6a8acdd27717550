"""Readers of the evaluation and training sets' label files (layouts of paper recipe §9).

Every reader returns :class:`Utterance` records (label 0 = bona fide/real, 1 = spoof/fake) and reads
only label files; it opens no audio. Problems are raised, never skipped:

- a missing root, label file or audio folder raises :class:`DatasetError` naming it;
- a malformed line raises :class:`DatasetError` naming the file and line number;
- listed audio files that do not exist raise :class:`DatasetError` listing them (the first few
  and the total), so a half-downloaded corpus cannot silently shrink a test set and move its EER.
  ``check_audio=False`` skips that check (one ``stat`` per file) when the caller only needs labels.

``utt_id`` is the name the authors' score files use for the same utterance, so that scores and
labels can be joined: the protocol FILE for ASVspoof 2019, the file stem for In-the-Wild
(``0.wav`` → ``0``), the file name as listed for Codecfake and ALM-ADD.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from streamdet.errors import DatasetError

BONAFIDE = 0
SPOOF = 1

_LABEL_WORDS = {
    "real": BONAFIDE,
    "bonafide": BONAFIDE,
    "bona-fide": BONAFIDE,
    "genuine": BONAFIDE,
    "fake": SPOOF,
    "spoof": SPOOF,
}
ASVSPOOF2019_PROTOCOLS = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}
CODECFAKE_PARTS = ("train", "dev", *(f"C{i}" for i in range(1, 8)), "A1", "A2", "A3")
# How many missing files an error message spells out before it only counts the rest.
_MISSING_SHOWN = 10


@dataclass(frozen=True)
class Utterance:
    """One labelled audio file: ``label`` 0 = bona fide/real, 1 = spoof/fake."""

    utt_id: str
    path: Path
    label: int


def parse_label(word: str) -> int:
    """Map a label word to 0 (real/bonafide/bona-fide/genuine) or 1 (fake/spoof), case-insensitively."""
    try:
        return _LABEL_WORDS[word.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown label {word!r}: expected one of {', '.join(_LABEL_WORDS)}") from None


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    return path


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what} not found: {path}")
    return path


def _fields(path: Path, min_fields: int) -> Iterator[tuple[int, list[str]]]:
    """Whitespace-separated fields of each non-blank line, with its 1-based line number."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < min_fields:
                raise DatasetError(
                    f"{path}:{number}: expected at least {min_fields} fields, got {line.strip()!r}"
                )
            yield number, fields


def _label_at(path: Path, number: int, word: str) -> int:
    try:
        return parse_label(word)
    except ValueError as error:
        raise DatasetError(f"{path}:{number}: {error}") from None


def _checked(utterances: list[Utterance], source: Path, check_audio: bool) -> list[Utterance]:
    if check_audio:
        missing = [str(u.path) for u in utterances if not u.path.is_file()]
        if missing:
            shown = "\n  ".join(missing[:_MISSING_SHOWN])
            more = (
                f"\n  ... and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
            )
            raise DatasetError(
                f"{len(missing)} of {len(utterances)} audio files listed in {source} do not exist:\n  {shown}{more}"
            )
    return utterances


def asvspoof2019_la(root: Path, part: str, *, check_audio: bool = True) -> list[Utterance]:
    """ASVspoof 2019 LA ``train``/``dev``/``eval``: protocol lines ``SPEAKER FILE - ATTACK KEY``."""
    if part not in ASVSPOOF2019_PROTOCOLS:
        raise ValueError(
            f"unknown ASVspoof2019 LA part {part!r}: expected one of {', '.join(ASVSPOOF2019_PROTOCOLS)}"
        )
    root = _require_dir(Path(root), "ASVspoof2019 LA root")
    protocol = _require_file(
        root / "ASVspoof2019_LA_cm_protocols" / f"ASVspoof2019.LA.cm.{ASVSPOOF2019_PROTOCOLS[part]}.txt",
        "ASVspoof2019 LA protocol",
    )
    audio = _require_dir(root / f"ASVspoof2019_LA_{part}" / "flac", "ASVspoof2019 LA audio folder")
    utterances = [
        Utterance(fields[1], audio / f"{fields[1]}.flac", _label_at(protocol, number, fields[4]))
        for number, fields in _fields(protocol, min_fields=5)
    ]
    return _checked(utterances, protocol, check_audio)


def in_the_wild(root: Path, *, check_audio: bool = True) -> list[Utterance]:
    """In-the-Wild: ``meta.csv`` (header ``file,speaker,label``) with the audio beside it."""
    root = _require_dir(Path(root), "In-the-Wild root")
    meta = _require_file(root / "meta.csv", "In-the-Wild meta.csv")
    utterances = []
    with meta.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise DatasetError(f"{meta}: header must name 'file' and 'label', got {reader.fieldnames}")
        for row in reader:
            # DictReader's line_num counts physical lines read so far, header included.
            if not row.get("file") or not row.get("label"):
                raise DatasetError(f"{meta}:{reader.line_num}: missing file or label")
            name = row["file"].strip()
            label = _label_at(meta, reader.line_num, row["label"])
            utterances.append(Utterance(Path(name).stem, root / name, label))
    return _checked(utterances, meta, check_audio)


def codecfake(root: Path, part: str, *, check_audio: bool = True) -> list[Utterance]:
    """Codecfake part (train, dev, C1..C7, A1..A3): ``label/<part>.txt`` lines ``FILE LABEL EXTRA``."""
    if part not in CODECFAKE_PARTS:
        raise ValueError(f"unknown Codecfake part {part!r}: expected one of {', '.join(CODECFAKE_PARTS)}")
    root = _require_dir(Path(root), "Codecfake root")
    labels = _require_file(root / "label" / f"{part}.txt", "Codecfake label file")
    audio_dir = root / part if part in ("train", "dev") else root / "test" / part
    audio = _require_dir(audio_dir, "Codecfake audio folder")
    utterances = [
        Utterance(fields[0], audio / fields[0], _label_at(labels, number, fields[1]))
        for number, fields in _fields(labels, min_fields=2)
    ]
    return _checked(utterances, labels, check_audio)


def folder_key(name: str) -> str:
    """Comparison key of a folder or condition name: lower-case letters and digits only."""
    # Folder names drift from the label-file suffix in case and separators (the paper writes
    # LauraGPT and HAM-TTS for the folders lauragpt and HAM_TTS); compare on letters and digits only.
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _alm_audio_dir(audio_root: Path, name: str, label_file: Path) -> Path:
    exact = audio_root / name
    if exact.is_dir():
        return exact
    candidates = [d for d in audio_root.iterdir() if d.is_dir() and folder_key(d.name) == folder_key(name)]
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(sorted(d.name for d in audio_root.iterdir() if d.is_dir())) or "none"
    problem = "several folders match" if candidates else "no folder matches"
    raise DatasetError(f"{label_file}: {problem} {name!r} under {audio_root} (folders: {found})")


def alm_add(root: Path, *, check_audio: bool = True) -> dict[str, list[Utterance]]:
    """ALM-ADD: ``label/<Axx-name>.txt`` (lines ``FILE LABEL``) → audio under ``audio/<name>/``.

    Returns condition (``"A01"``, ``"A07"``, ...) → utterances, in condition order.
    """
    root = _require_dir(Path(root), "ALM-ADD root")
    label_root = _require_dir(root / "label", "ALM-ADD label folder")
    audio_root = _require_dir(root / "audio", "ALM-ADD audio folder")
    conditions: dict[str, list[Utterance]] = {}
    for label_file in sorted(label_root.glob("*.txt")):
        match = re.fullmatch(r"(A\d{2})-(.+)", label_file.stem)
        if match is None:
            raise DatasetError(f"{label_file}: ALM-ADD label files are named <Axx-name>.txt")
        condition, name = match.groups()
        if condition in conditions:
            raise DatasetError(f"{label_file}: a second label file for condition {condition}")
        audio = _alm_audio_dir(audio_root, name, label_file)
        utterances = [
            Utterance(fields[0], audio / fields[0], _label_at(label_file, number, fields[1]))
            for number, fields in _fields(label_file, min_fields=2)
        ]
        conditions[condition] = _checked(utterances, label_file, check_audio)
    if not conditions:
        raise DatasetError(f"no ALM-ADD label files (<Axx-name>.txt) in {label_root}")
    return conditions


def list_file(path: Path, *, check_audio: bool = True) -> list[Utterance]:
    """A plain list of ``path label`` lines; relative paths resolve against the list file's folder.

    The label is the line's last word, so a path may contain spaces. ``utt_id`` is the path exactly
    as written in the list.
    """
    path = _require_file(Path(path), "list file")
    utterances = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            # The label is the last word; everything before it is the path, spaces included.
            fields = line.strip().rsplit(None, 1)
            if len(fields) != 2:
                raise DatasetError(f"{path}:{number}: expected 'path label', got {line.strip()!r}")
            written, word = fields
            utterances.append(Utterance(written, path.parent / written, _label_at(path, number, word)))
    return _checked(utterances, path, check_audio)
