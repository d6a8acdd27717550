"""W2V2-AASIST end to end on a random XLS-R-shaped model: cache, train, CM, evaluate; and DDP (gloo, 1 process)."""

from __future__ import annotations

import json
import socket

import pytest
import torch
from safetensors.torch import load_file

from offline.cli import main
from offline.features.cache import FeatureCache
from streamdet.audio import load_window
from streamdet.cm import load_cm


@pytest.fixture(scope="module")
def aasist_setup(tmp_path_factory, tiny_xlsr_dir, make_audio_set, make_config):
    """Caches of a tiny train/dev split and one plain 1-epoch run, done once; returns (config, root)."""
    root = tmp_path_factory.mktemp("aasist")
    train_list = make_audio_set(root / "train", 3, 3, seed=11, seconds=1.0)
    dev_list = make_audio_set(root / "dev", 2, 2, seed=12, seconds=1.0)
    config = make_config(
        root / "aasist.toml", "w2v2_aasist", train_list, dev_list, root / "run",
        schedule={"epochs": 1}, features={"w2v2_source": str(tiny_xlsr_dir), "cache_root": str(root / "cache")},
    )
    args = ["prepare-features", "--config", str(config), "--device", "cpu", "--num-workers", "0", "--no-progress"]
    assert main(args) == 0
    assert main(["train", "--config", str(config)]) == 0
    return config, root


def test_w2v2_aasist_smoke(aasist_setup, tiny_xlsr_dir, capsys):
    config, root = aasist_setup
    caches = sorted((root / "cache").iterdir())
    assert len(caches) == 2
    for directory in caches:
        cache = FeatureCache.open(directory)
        assert cache.complete and cache.index.dtype == "float16"
        assert cache.index.feature_shape == (1, 1024, 201)
        assert cache.index.frontend.source == str(tiny_xlsr_dir) and cache.index.frontend.layer == 5
    assert main(["check-features", "--config", str(config)]) == 0

    cm_dir = root / "run" / "cm"
    manifest = json.loads((cm_dir / "manifest.json").read_text())
    assert manifest["architecture"] == "w2v2_aasist" and manifest["w2v2_source"] == str(tiny_xlsr_dir)

    cm = load_cm(cm_dir, w2v2_source=str(tiny_xlsr_dir))
    window = torch.from_numpy(load_window(root / "dev" / "real_000.wav"))[None]
    assert cm.bonafide_probability(window).shape == (1,)

    capsys.readouterr()
    dev_list = root / "dev" / "list.txt"
    assert main(["evaluate", str(cm_dir), "--list", str(dev_list), "--json", "--device", "cpu",
                 "--w2v2-source", str(tiny_xlsr_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["list"] == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_world_of_one_matches_the_plain_run(aasist_setup, monkeypatch):
    """The torchrun path (process group, DDP wrapper, all-reduces) on gloo gives the plain run's weights."""
    config, root = aasist_setup
    plain, ddp = root / "run", root / "ddp"
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(key, value)
    assert main(["train", "--config", str(config), "--run-dir", str(ddp)]) == 0
    assert not torch.distributed.is_initialized()  # the trainer closed the group it opened
    a, b = load_file(plain / "cm" / "model.safetensors"), load_file(ddp / "cm" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
