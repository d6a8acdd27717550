"""Fixtures of the training tests: generated audio sets, list files and small experiment configs.

Generated "real" clips are harmonic tones with vibrato; "fake" ones are band-limited noise bursts. The
classes are easy to tell apart, so two tiny epochs already lower the loss, and nothing here needs the
reference data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SAMPLE_RATE = 16_000


def _real_clip(rng: np.random.Generator, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = rng.uniform(110, 220) * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    clip = sum(np.sin(k * phase) / k for k in range(1, 6))
    return (0.2 * clip / np.abs(clip).max()).astype(np.float32)


def _fake_clip(rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    noise = rng.normal(0, 1, n)
    smoothed = np.convolve(noise, np.ones(4) / 4, mode="same")  # a little low-pass
    bursts = (np.sin(2 * np.pi * rng.uniform(2, 5) * np.arange(n) / SAMPLE_RATE) > 0).astype(float)
    clip = smoothed * (0.3 + 0.7 * bursts)
    return (0.2 * clip / np.abs(clip).max()).astype(np.float32)


def write_synthetic_set(folder: Path, n_real: int, n_fake: int, seed: int, seconds: float = 1.5) -> Path:
    """Write wav files and a ``path label`` list file (relative paths); returns the list file."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_real + n_fake):
        real = i < n_real
        name = f"{'real' if real else 'fake'}_{i:03d}.wav"
        clip = _real_clip(rng, seconds) if real else _fake_clip(rng, seconds)
        sf.write(folder / name, clip, SAMPLE_RATE, subtype="PCM_16")
        lines.append(f"{name} {'real' if real else 'fake'}")
    listing = folder / "list.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing


@pytest.fixture(scope="session")
def synthetic_lists(tmp_path_factory) -> tuple[Path, Path]:
    """(train list, dev list): 4 + 4 training clips, 2 + 2 validation clips."""
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_set(root / "train", 4, 4, seed=1), write_synthetic_set(root / "dev", 2, 2, seed=2)


def write_config(path: Path, **sections: object) -> Path:
    """Write a small experiment config as TOML (scalars first, then one table per dict section)."""
    lines: list[str] = []
    tables: dict[str, dict] = {}
    for key, value in sections.items():
        if isinstance(value, dict):
            tables[key] = value
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    for table, values in tables.items():
        lines.append(f"\n[{table}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Path):
        return json.dumps(str(value))
    return json.dumps(value)


def tiny_run_config(
    path: Path, architecture: str, train_list: Path, dev_list: Path, run_dir: Path, **overrides: dict
) -> Path:
    """A small, fast experiment: batch 4, 2 epochs, no workers, no progress bars."""
    sections: dict[str, object] = {
        "name": f"test_{architecture}",
        "architecture": architecture,
        "data": {"train": [{"kind": "list", "path": train_list}], "dev": [{"kind": "list", "path": dev_list}]},
        "schedule": {"epochs": 2, "decay_every": 1},
        "train": {"batch_size": 4},
        "runtime": {"run_dir": run_dir, "device": "cpu", "num_workers": 0, "progress": False},
    }
    for section, values in overrides.items():
        sections[section] = {**sections.get(section, {}), **values}  # type: ignore[dict-item]
    return write_config(path, **sections)


@pytest.fixture(scope="session")
def make_audio_set():
    """``write_synthetic_set`` as a fixture (test modules cannot import conftest under importlib mode)."""
    return write_synthetic_set


@pytest.fixture(scope="session")
def make_config():
    """``tiny_run_config`` as a fixture."""
    return tiny_run_config
