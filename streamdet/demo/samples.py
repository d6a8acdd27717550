"""The clips ``streamdet demo`` streams: shipped in ``samples/`` (licences in ``samples/ATTRIBUTION.md``).

Each clip's stream id starts with its label (``genuine-`` or ``synthetic-``), so every printed line
and report row says what the stream really is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"

Label = Literal["genuine", "synthetic"]


@dataclass(frozen=True)
class DemoSample:
    stream_id: str
    file: str
    """File name inside ``SAMPLES_DIR``."""
    label: Label
    description: str

    @property
    def path(self) -> Path:
        return SAMPLES_DIR / self.file

    @property
    def expect_alert(self) -> bool:
        return self.label == "synthetic"


# Chosen among redistributable clips (CC0 / Apache-2.0) that the shipped CM gets right: a demo of
# the machinery, not a benchmark. docs/field-accuracy.md has the CM's measured error rates.
SAMPLES: tuple[DemoSample, ...] = (
    DemoSample("genuine-e1tts-gt3", "genuine-e1tts-gt3.flac", "genuine",
               "read English speech, a ground-truth recording from the E1 TTS demo page (12.1 s)"),
    DemoSample("synthetic-cosyvoice-069", "synthetic-cosyvoice-069.flac", "synthetic",
               "CosyVoice zero-shot TTS, from the E1 TTS demo page (11.4 s)"),
    DemoSample("synthetic-e1tts-074", "synthetic-e1tts-074.flac", "synthetic",
               "E1 TTS (DMD) zero-shot TTS, from the E1 TTS demo page (12.5 s)"),
)
