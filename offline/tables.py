"""The paper's EER table layout (Tables 1 and 2), its JSON form, and look-ups of the printed cells.

Columns: Feature | Backbone | 19LA | ITW | A01 ... A12 | AVG. Cells are EER percentages rounded to
three decimals (the paper truncated some 19LA/ITW cells; paper recipe §7 says print rounded values and
compare within 0.001). AVG is the mean over the A-conditions present; when some of A01-A12 are
missing the cell says how many it covers, e.g. ``9.424 (4/12)``, so a partial mean is never
mistaken for the paper's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALM_CONDITIONS = tuple(f"A{i:02d}" for i in range(1, 13))
CONDITIONS = ("19LA", "ITW", *ALM_CONDITIONS)
HEADER = ("Feature", "Backbone", *CONDITIONS, "AVG")
MISSING = "-"
# A printed cell has three decimals; the tolerance also absorbs the paper's truncation, and the
# epsilon the binary representation of the printed decimal.
CELL_TOLERANCE = 0.001 + 1e-9


@dataclass(frozen=True)
class TableRow:
    """One CM's results: ``eer`` maps a condition (19LA, ITW, A01..A12) to EER in percent."""

    feature: str
    backbone: str
    eer: Mapping[str, float]

    @classmethod
    def for_cm(cls, cm: str, eer: Mapping[str, float]) -> TableRow:
        """A row for a CM named as in the paper, ``<feature>-<backbone>`` (e.g. ``W2V2-AASIST``)."""
        feature, separator, backbone = cm.partition("-")
        if not separator or not feature or not backbone:
            raise ValueError(f"CM name {cm!r} is not <feature>-<backbone>")
        return cls(feature, backbone, eer)


def _check_conditions(eer: Mapping[str, float]) -> None:
    unknown = sorted(set(eer) - set(CONDITIONS))
    if unknown:
        raise ValueError(
            f"conditions outside the paper's table: {', '.join(unknown)} (columns: {', '.join(CONDITIONS)})"
        )


def alm_average(eer: Mapping[str, float]) -> tuple[float | None, int]:
    """Mean EER over the A01-A12 conditions present, and how many there were (None if none)."""
    values = [eer[c] for c in ALM_CONDITIONS if c in eer]
    return (sum(values) / len(values) if values else None), len(values)


def _cells(row: TableRow) -> list[str]:
    _check_conditions(row.eer)
    cells = [row.feature, row.backbone]
    cells += [f"{row.eer[c]:.3f}" if c in row.eer else MISSING for c in CONDITIONS]
    average, count = alm_average(row.eer)
    if average is None:
        cells.append(MISSING)
    elif count < len(ALM_CONDITIONS):
        cells.append(f"{average:.3f} ({count}/{len(ALM_CONDITIONS)})")
    else:
        cells.append(f"{average:.3f}")
    return cells


def render_table(rows: Sequence[TableRow], title: str | None = None) -> str:
    """A plain-text table in the paper's layout, one line per CM, columns padded to align."""
    table = [list(HEADER), *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    # Names align left, numbers right, as in the paper.
    lines = [
        " | ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in table
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    if title:
        lines.insert(0, title)
    return "\n".join(lines) + "\n"


def table_json(row: TableRow) -> dict[str, Any]:
    """The ``--json`` form of one CM's results: unrounded percentages, AVG and its coverage."""
    _check_conditions(row.eer)
    average, count = alm_average(row.eer)
    return {
        "feature": row.feature,
        "backbone": row.backbone,
        "eer": {c: float(row.eer[c]) for c in CONDITIONS if c in row.eer},
        "avg": average,
        "avg_over": [c for c in ALM_CONDITIONS if c in row.eer],
        "avg_complete": count == len(ALM_CONDITIONS),
    }


def cell_matches(value: float, printed: float) -> bool:
    """Whether a reproduced EER (percent) matches a printed paper cell (paper recipe §7)."""
    return abs(value - printed) <= CELL_TOLERANCE


def paper_cell(tables_json_path: Path, table: str, cm: str, column: str) -> float:
    """The printed cell of ``tables.json``: table "19LA"|"Codecfake", cm "Mel-LCNN"|..., a column."""
    data = json.loads(Path(tables_json_path).read_text(encoding="utf-8"))
    tables = data["tables"]
    if table not in tables:
        raise ValueError(f"unknown table {table!r}: expected one of {', '.join(tables)}")
    if cm not in tables[table]:
        raise ValueError(f"unknown CM {cm!r}: expected one of {', '.join(tables[table])}")
    columns: list[str] = data["columns"]
    if column not in columns:
        raise ValueError(f"unknown column {column!r}: expected one of {', '.join(columns)}")
    return float(tables[table][cm][columns.index(column)])
