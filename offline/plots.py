"""Confusion-matrix figures in the style of the paper's Fig. 4.

Uses matplotlib's object API with the Agg canvas directly (no ``pyplot``), so plotting neither
needs a display nor touches global figure state shared with other code in the process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

CLASS_NAMES = ("real", "fake")


def plot_confusion_matrix(matrix: npt.ArrayLike, path: Path, title: str) -> Path:
    """Write a PNG of a row-normalised 2x2 matrix (rows true, columns predicted; real, fake).

    Cells show percentages; an undefined row (a class with no trials, NaN) shows "n/a".
    """
    values = np.asarray(matrix, dtype=np.float64)
    if values.shape != (2, 2):
        raise ValueError(f"confusion matrix must be 2x2, got shape {values.shape}")
    figure = Figure(figsize=(4.0, 3.6), dpi=150)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(np.nan_to_num(values, nan=0.0), cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    for row in range(2):
        for column in range(2):
            value = values[row, column]
            text = "n/a" if np.isnan(value) else f"{100.0 * value:.2f}%"
            # Dark text on light cells, light text on dark ones, so every value stays readable.
            colour = "white" if not np.isnan(value) and value > 0.5 else "black"
            axes.text(column, row, text, ha="center", va="center", color=colour, fontsize=11)
    axes.set_xticks(range(2), CLASS_NAMES)
    axes.set_yticks(range(2), CLASS_NAMES)
    axes.set_xlabel("Predicted label")
    axes.set_ylabel("True label")
    axes.set_title(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
