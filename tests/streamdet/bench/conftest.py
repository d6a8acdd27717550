"""Fixtures for the benchmark tests: a random-weight Mel-LCNN CM, and a tiny whole XLS-R.

Tests check the reports' fields and the behaviour of the measuring code, never timings.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mel_cm_dir(tmp_path_factory) -> Path:
    """A Mel-LCNN CM with random weights in streamdet's format (``streamdet.cm.save_cm``)."""
    from streamdet.bench.models import save_random_cm

    directory = tmp_path_factory.mktemp("bench_mel_cm")
    save_random_cm(directory, "mel_lcnn")
    return directory


def _root_helper(config: pytest.Config, name: str):
    """A helper function of the root conftest (importlib mode: conftests cannot be imported by name)."""
    for plugin in config.pluginmanager.get_plugins():
        helper = getattr(plugin, name, None)
        if callable(helper):
            return helper
    raise LookupError(f"no {name} in the loaded conftests")


@pytest.fixture(scope="session")
def tiny_whole_xlsr_dir(pytestconfig: pytest.Config, tmp_path_factory) -> Path:
    """A random XLS-R-shaped ``Wav2Vec2Model`` with seven layers: the reference path runs them all,
    streamdet's the first five."""
    import torch
    from transformers import Wav2Vec2Model

    xlsr_shaped_config = _root_helper(pytestconfig, "xlsr_shaped_config")
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_whole_xlsr")
    Wav2Vec2Model(xlsr_shaped_config(7)).save_pretrained(directory)
    return directory
