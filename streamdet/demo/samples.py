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


# Built from Debian packages by scripts/make_demo_clips.py, seeds picked as clips the shipped CM gets
# right: a demo of the machinery, not a benchmark (classic TTS, not modern neural fakes).
# docs/field-accuracy.md has the CM's measured error rates.
SAMPLES: tuple[DemoSample, ...] = (
    DemoSample("genuine-asterisk-it", "genuine-asterisk-it.flac", "genuine",
               "Italian telephone prompts read by a human voice actor, from asterisk-core-sounds-it (15.5 s)"),
    DemoSample("synthetic-flite-rms", "synthetic-flite-rms.flac", "synthetic",
               "English prompts spoken by the flite TTS voice rms (15.7 s)"),
    DemoSample("synthetic-espeak-ng-it", "synthetic-espeak-ng-it.flac", "synthetic",
               "Italian prompts spoken by the espeak-ng TTS voice it (14.1 s)"),
)
