"""The paper's table layout, its JSON form and look-ups in tables.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offline.tables import HEADER, TableRow, alm_average, cell_matches, paper_cell, render_table, table_json

# Table 2, W2V2-AASIST, as printed.
AASIST_CODECFAKE = dict(
    zip(
        ("19LA", "ITW", *(f"A{i:02d}" for i in range(1, 13))),
        (3.806, 9.606, 3.869, 50.0, 0.225, 0.135, 0.0, 50.0, 0.0, 0.0, 0.0, 0.0, 8.854, 0.0),
        strict=True,
    )
)


def _row_cells(text: str, index: int) -> list[str]:
    return [cell.strip() for cell in text.splitlines()[index].split("|")]


def test_full_row_renders_like_the_paper() -> None:
    text = render_table([TableRow.for_cm("W2V2-AASIST", AASIST_CODECFAKE)])
    assert _row_cells(text, 0) == list(HEADER)
    cells = _row_cells(text, 2)
    assert cells[:5] == ["W2V2", "AASIST", "3.806", "9.606", "3.869"]
    # The paper's AVG: (3.869 + 50 + 0.225 + 0.135 + 50 + 8.854) / 12 = 113.083 / 12 = 9.42358 -> 9.424
    assert cells[-1] == "9.424"
    assert len({len(line) for line in text.splitlines()}) == 1  # columns aligned


def test_partial_row_rounds_marks_missing_and_counts_avg() -> None:
    eer = {"ITW": 47.02148958647295, "A03": 21.23326558159897, "A04": 3.2406978786542333, "A01": 45.5555}
    text = render_table([TableRow("Mel", "LCNN", eer)], title="Table 1")
    assert text.splitlines()[0] == "Table 1"
    cells = dict(zip(HEADER, _row_cells(text, 3), strict=True))
    assert cells["19LA"] == "-"
    assert cells["ITW"] == "47.021"
    assert cells["A01"] == "45.556"  # rounded, not truncated
    assert cells["A04"] == "3.241"
    assert cells["A02"] == "-"
    # (45.5555 + 21.23327 + 3.24070) / 3 = 23.34316
    assert cells["AVG"] == "23.343 (3/12)"


def test_no_alm_condition_gives_no_avg() -> None:
    text = render_table([TableRow("Mel", "LCNN", {"19LA": 5.08})])
    assert _row_cells(text, 2)[-1] == "-"
    assert alm_average({"19LA": 5.08}) == (None, 0)


def test_unknown_condition_is_an_error() -> None:
    with pytest.raises(ValueError, match="C1"):
        render_table([TableRow("Mel", "LCNN", {"C1": 1.0})])


def test_for_cm_needs_feature_and_backbone() -> None:
    assert TableRow.for_cm("Mel-LCNN", {}).backbone == "LCNN"
    with pytest.raises(ValueError, match="AASIST"):
        TableRow.for_cm("AASIST", {})


def test_json_keeps_unrounded_values() -> None:
    data = table_json(
        TableRow("W2V2", "AASIST", {"ITW": 9.606696940796125, "A01": 3.869047619047619, "A07": 0.0})
    )
    assert data["eer"] == {"ITW": 9.606696940796125, "A01": 3.869047619047619, "A07": 0.0}
    assert data["avg"] == pytest.approx(3.869047619047619 / 2)
    assert data["avg_over"] == ["A01", "A07"]
    assert data["avg_complete"] is False
    json.dumps(data)  # serialisable as is
    assert table_json(TableRow("W2V2", "AASIST", AASIST_CODECFAKE))["avg_complete"] is True


def test_cell_matches_tolerance() -> None:
    assert cell_matches(5.0846752609028405, 5.084)  # truncated by the paper
    assert cell_matches(45.5556, 45.556)
    assert cell_matches(3.241, 3.240)  # exactly 0.001 apart, despite binary rounding
    assert not cell_matches(3.2415, 3.240)
    assert not cell_matches(0.0, 0.002)


def test_paper_cell(tmp_path: Path) -> None:
    path = tmp_path / "tables.json"
    path.write_text(
        json.dumps(
            {
                "columns": ["19LA", "ITW", "A01"],
                "tables": {
                    "19LA": {"Mel-LCNN": [5.084, 47.021, 46.131]},
                    "Codecfake": {"Mel-LCNN": [26.826, 42.635, 31.696]},
                },
            }
        )
    )
    assert paper_cell(path, "19LA", "Mel-LCNN", "ITW") == 47.021
    assert paper_cell(path, "Codecfake", "Mel-LCNN", "A01") == 31.696
    with pytest.raises(ValueError, match="'Codec'"):
        paper_cell(path, "Codec", "Mel-LCNN", "A01")
    with pytest.raises(ValueError, match="'W2V2-LCNN'"):
        paper_cell(path, "19LA", "W2V2-LCNN", "A01")
    with pytest.raises(ValueError, match="'A13'"):
        paper_cell(path, "19LA", "Mel-LCNN", "A13")


def test_paper_cell_shared(shared_dir: Path) -> None:
    tables = shared_dir / "paper" / "tables.json"
    assert paper_cell(tables, "19LA", "W2V2-AASIST", "19LA") == 0.122
    assert paper_cell(tables, "Codecfake", "W2V2-AASIST", "AVG") == 9.424
    # Table 2's own AVG equals the mean of its printed A-cells, as rendered above.
    text = render_table([TableRow.for_cm("W2V2-AASIST", AASIST_CODECFAKE)])
    assert cell_matches(float(_row_cells(text, 2)[-1]), paper_cell(tables, "Codecfake", "W2V2-AASIST", "AVG"))
