"""Safe import of released checkpoints: exact weights, and no code from the file ever runs."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from offline.checkpoint import import_checkpoint, read_released_state_dict
from offline.releases import RELEASES
from streamdet.cm import build_backend, load_cm
from streamdet.errors import CheckpointError
from streamdet.models.lcnn import LCNN


class _Payload:
    """Pickles to ``os.system(<command>)``: what a hostile checkpoint would carry."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _torch_zip(path: Path, obj: object) -> Path:
    """A file laid out like torch.save's zip format, with ``obj`` as its pickle."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        archive.writestr("archive/version", "3\n")
    return path


def test_pickle_with_payload_is_refused_and_has_no_effect(tmp_path):
    marker = tmp_path / "pwned"
    hostile = _torch_zip(tmp_path / "hostile.pt", {"weight": _Payload(f"touch {marker}")})
    with pytest.raises(CheckpointError, match=r"refused to load (posix|os)\.system"):
        read_released_state_dict(hostile)
    with pytest.raises(CheckpointError, match="refused"):
        import_checkpoint(hostile, tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_pickle_naming_an_arbitrary_class_is_refused(tmp_path):
    # builtins.eval is not a module class nor tensor data: refused by name.
    class Evil:
        def __reduce__(self):
            return (eval, ("1+1",))

    with pytest.raises(CheckpointError, match=r"(__builtin__|builtins)\.eval"):
        read_released_state_dict(_torch_zip(tmp_path / "evil.pt", Evil()))


def test_class_payload_becomes_an_inert_placeholder(tmp_path):
    """Classes are never resolved: a pickle calling subprocess.Popen constructs nothing."""
    import subprocess

    marker = tmp_path / "pwned"

    class Spawn:
        def __reduce__(self):
            return (subprocess.Popen, (["touch", str(marker)],))

    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_released_state_dict(_torch_zip(tmp_path / "spawn.pt", Spawn()))
    assert not marker.exists()


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="bad.pt: not a torch zip checkpoint"):
        read_released_state_dict(bad)


def test_torch_saved_module_round_trips(tmp_path):
    """A whole-module torch.save of our own LCNN imports to identical weights."""
    torch.manual_seed(1)
    model = LCNN()
    torch.save(model, tmp_path / "model.pt")
    state, top = read_released_state_dict(tmp_path / "model.pt")
    assert top.endswith("LCNN")
    for name, tensor in model.state_dict().items():
        assert torch.equal(state[name], tensor), name


def test_sha256_mismatch_is_refused(tmp_path):
    torch.save(LCNN(), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="does not match the pinned"):
        import_checkpoint(tmp_path / "model.pt", tmp_path / "out", expected_sha256="0" * 64)


@pytest.mark.reference
@pytest.mark.parametrize("name", sorted(RELEASES))
def test_released_cms_match_test_vectors(name, released_checkpoint, shared_dir, tmp_path):
    """Import → our format → load: logits and hidden vectors equal the authors' models' (1e-4)."""
    release = RELEASES[name]
    manifest = import_checkpoint(released_checkpoint(name), tmp_path / name, expected_sha256=release.sha256)
    assert manifest.architecture == release.architecture
    # The backend alone: W2V2 CMs' front-end (XLS-R) cannot be downloaded here.
    from safetensors.torch import load_file

    backend = build_backend(manifest.architecture)
    backend.load_state_dict(load_file(tmp_path / name / "model.safetensors"), strict=True)
    backend.eval()
    vectors = shared_dir / "codecfake" / "test_vectors"
    features_file = "mel_features.npz" if manifest.architecture == "mel_lcnn" else "w2v2_features.npz"
    features = torch.from_numpy(np.load(vectors / features_file)["features"])
    expected = np.load(vectors / f"{name}.npz")
    with torch.no_grad():
        logits, hidden = backend(features)
    np.testing.assert_allclose(logits.numpy(), expected["logits"], atol=1e-4)
    np.testing.assert_allclose(hidden.numpy(), expected["hidden"], atol=1e-4)


@pytest.mark.reference
def test_imported_mel_cm_loads_without_pickle(released_checkpoint, tmp_path, monkeypatch):
    import_checkpoint(released_checkpoint("codec_mellcnn"), tmp_path / "cm")

    def no_pickle(*args, **kwargs):
        raise AssertionError("loading our format must not unpickle")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    cm = load_cm(tmp_path / "cm")
    assert cm.manifest.name == "codec_mellcnn"
    assert cm.bonafide_probability(torch.zeros(2, 64600)).shape == (2,)
