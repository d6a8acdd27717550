"""Training snapshots round-trip nested state exactly, without pickle."""

from __future__ import annotations

import pytest
import torch

from offline.training.snapshot import load_snapshot, save_snapshot
from streamdet.errors import CheckpointError


def test_roundtrip_keeps_int_keys_tensors_and_scalars(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {
        "epoch": 3, "best": None, "loss": 0.25, "flag": True, "history": [{"epoch": 1, "val": float("inf")}],
        "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
    }
    save_snapshot(tmp_path / "s.safetensors", state)
    back = load_snapshot(tmp_path / "s.safetensors")
    assert back["epoch"] == 3 and back["best"] is None and back["flag"] is True
    assert back["history"] == [{"epoch": 1, "val": float("inf")}]
    assert torch.equal(back["rng"], state["rng"])
    assert set(back["optimizer"]["state"]) == {0, 1}  # int keys survive (JSON alone would make them str)
    restored = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    restored.load_state_dict(back["optimizer"])
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(restored.state_dict()["state"][0][key], optimizer.state_dict()["state"][0][key])
    assert not list(tmp_path.glob("*.tmp"))


def test_damaged_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "s.safetensors"
    path.write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="unreadable"):
        load_snapshot(path)
