"""Build the three clips ``streamdet demo`` streams, from audio made out of Debian packages.

    python scripts/make_demo_clips.py --data-root data [--out streamdet/demo/samples]

DATA_ROOT holds the folders the offline recipes build:

    offline data asterisk --dest DATA_ROOT/asterisk
    offline data tts-spoofs --dest DATA_ROOT/tts_spoofs --asterisk-root DATA_ROOT/asterisk --per-voice 40

Each clip is a seeded shuffle of one index's prompts of at least ``MIN_PROMPT_S`` seconds, joined
with ``GAP_S`` of silence, until the clip is ``MIN_CLIP_S`` to ``MAX_CLIP_S`` long; each prompt is decoded,
mixed to mono and resampled to 16 kHz with ``streamdet.audio.load_audio``, otherwise unchanged.
Written as 16 kHz mono 16-bit FLAC. Same packages and seeds, same clips. The prompts used are
printed, one line each.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from streamdet.audio import SAMPLE_RATE, load_audio

MIN_PROMPT_S = 2.0
"""Shorter prompts (single words: "Attivato.") would make a clip mostly gaps."""
MIN_CLIP_S = 14.0
MAX_CLIP_S = 16.0
"""A prompt that would take the clip past this is passed over, so the demo stays short."""
GAP_S = 0.3


@dataclass(frozen=True)
class ClipRecipe:
    file: str
    index: str
    """The prompt index (TSV with ``path`` and ``seconds`` columns), relative to the data root;
    its ``path`` column is relative to the index's folder."""
    seed: int
    """Picked as one whose clip the shipped CM gets right (see the samples' ATTRIBUTION.md)."""


CLIPS: tuple[ClipRecipe, ...] = (
    ClipRecipe("genuine-asterisk-it.flac", "asterisk/asterisk-it.tsv", seed=0),
    ClipRecipe("synthetic-flite-rms.flac", "tts_spoofs/tts-flite-rms.tsv", seed=0),
    ClipRecipe("synthetic-espeak-ng-it.flac", "tts_spoofs/tts-espeak-ng-it.tsv", seed=1),
)


@dataclass(frozen=True)
class Prompt:
    path: Path
    seconds: float
    text: str


def read_prompts(index: Path) -> list[Prompt]:
    """The index's prompts of at least ``MIN_PROMPT_S``, in the index's order."""
    with index.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [Prompt(index.parent / row["path"], float(row["seconds"]), row["text"])
            for row in rows if float(row["seconds"]) >= MIN_PROMPT_S]


def pick_prompts(prompts: Sequence[Prompt], seed: int) -> list[Prompt]:
    """Prompts in a seeded shuffle's order, passing over any that would take the clip (listed
    durations plus gaps) past ``MAX_CLIP_S``, until it reaches ``MIN_CLIP_S``."""
    picked: list[Prompt] = []
    total = 0.0
    for i in np.random.default_rng(seed).permutation(len(prompts)):
        prompt = prompts[int(i)]
        length = total + (GAP_S if picked else 0.0) + prompt.seconds
        if length > MAX_CLIP_S:
            continue
        picked.append(prompt)
        total = length
        if total >= MIN_CLIP_S:
            return picked
    raise SystemExit(f"no {MIN_CLIP_S}-{MAX_CLIP_S} s clip from these prompts (got {total:.1f} s)")


def join_prompts(prompts: Sequence[Prompt]) -> np.ndarray:
    """The prompts at 16 kHz, mono, with ``GAP_S`` of silence between each two."""
    gap = np.zeros(round(GAP_S * SAMPLE_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    for n, prompt in enumerate(prompts):
        if n:
            parts.append(gap)
        parts.append(load_audio(prompt.path))
    return np.concatenate(parts)


def build_clip(recipe: ClipRecipe, data_root: Path, out_dir: Path) -> Path:
    prompts = pick_prompts(read_prompts(data_root / recipe.index), recipe.seed)
    samples = join_prompts(prompts)
    out = out_dir / recipe.file
    sf.write(out, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    print(f"{recipe.file}: {len(samples) / SAMPLE_RATE:.2f} s from {recipe.index}, seed {recipe.seed}")
    for prompt in prompts:
        print(f"  {prompt.path.relative_to(data_root)}  ({prompt.seconds:.2f} s)  {prompt.text}")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, required=True,
                        help="folder holding asterisk/ and tts_spoofs/ as the offline recipes build them")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "streamdet/demo/samples",
                        help="where the FLACs go (default: the package's demo samples)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for recipe in CLIPS:
        build_clip(recipe, args.data_root, args.out)


if __name__ == "__main__":
    main()
