"""The authors' released score files reproduce the paper's table cells (paper recipe §7).

Reads ``shared/codecfake/scores`` and ``shared/alm-add/result``; skipped without
STREAMDET_REFERENCE_DATA.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from offline.metrics import paper_eer
from offline.scorefiles import read_scores, score_file_condition
from offline.tables import cell_matches, paper_cell

pytestmark = pytest.mark.reference

CASES = [
    # (score file under shared/, table, CM)
    ("codecfake/scores/vocoder_mellcnn/19LA_result.txt", "19LA", "Mel-LCNN"),
    ("codecfake/scores/vocoder_mellcnn/ITW_result.txt", "19LA", "Mel-LCNN"),
    ("codecfake/scores/vocoder_mellcnn/L1_result.txt", "19LA", "Mel-LCNN"),
    ("codecfake/scores/vocoder_mellcnn/L2_result.txt", "19LA", "Mel-LCNN"),
    ("codecfake/scores/codec_w2v2aasist/ITW_result.txt", "Codecfake", "W2V2-AASIST"),
    ("codecfake/scores/codec_w2v2aasist/L1_result.txt", "Codecfake", "W2V2-AASIST"),
    ("codecfake/scores/codec_w2v2aasist/L2_result.txt", "Codecfake", "W2V2-AASIST"),
    ("alm-add/result/AudioLM.txt", "Codecfake", "W2V2-AASIST"),
    ("alm-add/result/lauragpt.txt", "Codecfake", "W2V2-AASIST"),
    ("alm-add/result/HAM_TTS.txt", "Codecfake", "W2V2-AASIST"),
    ("alm-add/result/RALL-E.txt", "Codecfake", "W2V2-AASIST"),
]
EXPECTED_CONDITIONS = ["19LA", "ITW", "A03", "A04", "ITW", "A03", "A04", "A01", "A07", "A09", "A10"]


def test_conditions_of_released_files() -> None:
    assert [score_file_condition(Path(name)) for name, _, _ in CASES] == EXPECTED_CONDITIONS


@pytest.mark.parametrize(("name", "table", "cm"), CASES, ids=[f"{c[2]}-{c[0].split('/')[-1]}" for c in CASES])
def test_released_scores_reproduce_paper_cell(shared_dir: Path, name: str, table: str, cm: str) -> None:
    path = shared_dir / name
    scores = read_scores(path)
    value = paper_eer(scores.scores, scores.labels)
    printed = paper_cell(shared_dir / "paper" / "tables.json", table, cm, score_file_condition(path))
    assert cell_matches(value, printed), f"{name}: EER {value:.5f} % vs paper {printed:.3f} %"
