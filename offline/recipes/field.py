"""The field list: every clip the field CMs may train or be evaluated on, with its source or system.

One TSV (``field.tsv``) with a row per clip: ``path`` (absolute: shared files are referenced where they
are, never copied), ``label`` (real/fake), ``group`` (the real *source* or fake *system* the clip comes
from: the unit cross-validation holds out), ``origin`` (which data set: ``field-data``, ``asterisk``,
``alm-add``, ``tts-spoofs``), ``seconds``, ``license``.

Groups: field-data's ``system_or_source``; ``asterisk-<language>`` (one speaker each);
``alm-<condition>`` (ALM-ADD, real and fake clips of one condition share the group: they come from one
demo page); ``tts-<system>``. Sets that are absent are skipped with a note, so the recipe works with
whatever ``offline data`` has built.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from offline import datasets
from streamdet.errors import DatasetError

COLUMNS = ("path", "label", "group", "origin", "seconds", "license")


@dataclass(frozen=True)
class FieldClip:
    path: Path
    label: int
    group: str
    origin: str
    seconds: float
    license: str = ""

    @property
    def utt_id(self) -> str:
        """Unique within a field list: the group plus the file's folder and name."""
        return f"{self.group}/{self.path.parent.name}/{self.path.name}"

    def utterance(self) -> datasets.Utterance:
        return datasets.Utterance(self.utt_id, self.path, self.label)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def field_data_clips(root: Path) -> list[FieldClip]:
    """``field-data/sources.tsv``: every clip, grouped by its ``system_or_source``."""
    table = Path(root) / "sources.tsv"
    if not table.is_file():
        raise DatasetError(f"{table} not found: --field-data must name the folder holding sources.tsv")
    return [FieldClip((Path(root) / r["relpath"]).resolve(), datasets.parse_label(r["label"]), r["system_or_source"],
                      "field-data", float(r["seconds"]), r.get("license", ""))
            for r in _rows(table)]


def asterisk_clips(root: Path) -> list[FieldClip]:
    clips = []
    for table in sorted(Path(root).glob("asterisk-*.tsv")):
        language = table.stem[len("asterisk-"):]
        clips += [FieldClip((table.parent / r["path"]).resolve(), datasets.parse_label(r["label"]),
                            f"asterisk-{language}", "asterisk", float(r["seconds"]), "Asterisk sounds (Debian package)")
                  for r in _rows(table)]
    return clips


def tts_clips(root: Path) -> list[FieldClip]:
    clips = []
    for table in sorted(Path(root).glob("tts-*.tsv")):
        clips += [FieldClip((table.parent / r["path"]).resolve(), datasets.parse_label(r["label"]),
                            f"tts-{r['system']}", "tts-spoofs", float(r["seconds"]), "synthesised locally")
                  for r in _rows(table)]
    return clips


def alm_clips(root: Path) -> list[FieldClip]:
    return [FieldClip(u.path.resolve(), u.label, f"alm-{condition}", "alm-add", float(sf.info(u.path).duration),
                      "ALM-ADD")
            for condition, utterances in datasets.alm_add(root).items() for u in utterances]


def build_field_list(field_data: Path, asterisk: Path | None = None, tts: Path | None = None,
                     alm_add: Path | None = None) -> tuple[list[FieldClip], list[str]]:
    """All clips of the sets given (field-data is required), and notes about the sets skipped."""
    clips = field_data_clips(field_data)
    notes = []
    for name, root, reader in (("asterisk", asterisk, asterisk_clips), ("tts-spoofs", tts, tts_clips),
                               ("alm-add", alm_add, alm_clips)):
        if root is None:
            continue
        if not Path(root).is_dir():
            notes.append(f"{name}: {root} not found, skipped (build it with `offline data ...`)")
            continue
        found = reader(Path(root))
        if not found:
            notes.append(f"{name}: no clips under {root}, skipped")
        clips += found
    ids = [c.utt_id for c in clips]
    if len(set(ids)) != len(ids):
        raise DatasetError("two clips share a group and file name; the field list needs unique ids")
    return clips, notes


def write_field_list(path: Path, clips: Iterable[FieldClip]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for c in clips:
            writer.writerow([str(c.path), "real" if c.label == datasets.BONAFIDE else "fake", c.group, c.origin,
                             f"{c.seconds:.3f}", c.license])
    return path


def read_field_list(path: Path) -> list[FieldClip]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} not found: run `offline data field` first")
    rows = _rows(path)
    missing = set(COLUMNS[:4]) - set(rows[0] if rows else COLUMNS)
    if missing:
        raise DatasetError(f"{path}: not a field list (missing columns {sorted(missing)})")
    return [FieldClip(Path(r["path"]), datasets.parse_label(r["label"]), r["group"], r["origin"],
                      float(r.get("seconds") or 0.0), r.get("license", "")) for r in rows]


def summary(clips: Iterable[FieldClip]) -> list[tuple[str, str, str, int, float]]:
    """(origin, label, group, clips, minutes) per group, sorted."""
    table: dict[tuple[str, str, str], list[float]] = {}
    for c in clips:
        key = (c.origin, "real" if c.label == datasets.BONAFIDE else "fake", c.group)
        table.setdefault(key, []).append(c.seconds)
    return [(*key, len(v), sum(v) / 60) for key, v in sorted(table.items())]
