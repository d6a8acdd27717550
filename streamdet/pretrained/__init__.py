"""CMs shipped inside the package, so that ``streamdet serve`` works with no download.

``telephone_mellcnn/``: the Mel-LCNN fine-tuned for telephone channels
(docs/field-accuracy.md), ``model.safetensors`` + ``manifest.json`` with its calibrated threshold.
Rebuilt by ``scripts/field_recipe.sh`` (data, splits, training, calibration, evaluation, ship).
"""

from __future__ import annotations

from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent
DEFAULT_CM_NAME = "telephone_mellcnn"


def default_cm_dir() -> Path:
    """The CM directory ``streamdet serve`` scores with when no ``--engine`` is given."""
    return PRETRAINED_DIR / DEFAULT_CM_NAME
