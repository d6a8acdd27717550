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


# --- hostile archives: sizes, sharing, depth (files made by tests/offline/crafted_checkpoints.py) ----

_RSS_PROBE = """
import resource, sys
import torch  # noqa: F401  (imported before the baseline)
from offline.checkpoint import read_released_state_dict
from streamdet.errors import CheckpointError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_released_state_dict(sys.argv[1])
    outcome = "loaded"
except CheckpointError as exc:
    outcome = "refused: " + str(exc)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)  # KiB
print(outcome)
"""


def _rss_growth_mib(path: Path) -> tuple[float, str]:
    """Peak RSS growth of a fresh process reading ``path`` (MiB), and what happened."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(path)], capture_output=True, text=True,
                            check=True, timeout=300)
    growth, outcome = result.stdout.strip().splitlines()[-2:]
    return int(growth) / 1024, outcome


def test_a_10_kb_checkpoint_unpacking_to_gigabytes_is_refused_before_allocating(tmp_path):
    """A ~10 KB file whose one deflated storage unpacks to 10 MB, shared by many tensors, used to be
    copied once per tensor: 9.7 KB -> 3.5 GB RSS with 350 references. Refused before reading: RSS
    grows < 50 MB (20 references here: the old importer would grow 200 MB)."""
    from tests.offline.crafted_checkpoints import StorageRef, TensorOf, craft

    numel = 10 * (1 << 20) // 4
    ref = StorageRef("0", numel)
    root = {f"w{i}": TensorOf(ref, 0, (numel,), (1,)) for i in range(20)}
    path = craft(tmp_path / "bomb.pt", root, {"0": bytes(numel * 4)}, compress=True)
    assert path.stat().st_size < 64 * 1024
    growth, outcome = _rss_growth_mib(path)
    assert outcome.startswith("refused:") and "compressed" in outcome
    assert growth < 50


def test_a_storage_shared_by_many_tensors_is_read_once(tmp_path):
    """torch.save stores a shared storage once; the importer now loads it once too (it used to copy
    it for every tensor): 40 tensors on one 4 MB storage, RSS grows < 50 MB instead of 160 MB."""
    from tests.offline.crafted_checkpoints import StorageRef, TensorOf, craft

    numel = (1 << 20)
    ref = StorageRef("0", numel)
    root = {f"w{i}": TensorOf(ref, 0, (numel,), (1,)) for i in range(40)}
    path = craft(tmp_path / "shared.pt", root, {"0": bytes(numel * 4)})
    growth, outcome = _rss_growth_mib(path)
    assert outcome == "loaded"
    assert growth < 50
    state, _ = read_released_state_dict(path)
    assert len({t.untyped_storage().data_ptr() for t in state.values()}) == 1


@pytest.mark.parametrize("case", ["claims more than the entry", "missing entry", "view outside its storage",
                                  "negative stride", "same key, two sizes", "tensor state set"])
def test_storage_claims_that_do_not_match_the_archive_are_refused(tmp_path, case):
    from tests.offline.crafted_checkpoints import StorageRef, TensorOf, craft

    small = StorageRef("0", 4)
    entries = {"0": bytes(16)}
    root: object = {
        "claims more than the entry": {"w": TensorOf(StorageRef("0", 875_000_000), 0, (4,), (1,))},
        "missing entry": {"w": TensorOf(StorageRef("9", 4), 0, (4,), (1,))},
        "view outside its storage": {"w": TensorOf(small, 0, (875_000_000,), (1,))},
        "negative stride": {"w": TensorOf(small, 3, (4,), (-1,))},
        "same key, two sizes": {"a": TensorOf(small, 0, (4,), (1,)), "b": TensorOf(StorageRef("0", 2), 0, (2,), (1,))},
        "tensor state set": None,
    }[case]
    if case == "tensor state set":
        # Tensor.__setstate__'s legacy form calls set_() with the file's sizes: an empty storage
        # would grow to 3.5 GB.
        empty = StorageRef("1", 0)
        root = {"w": TensorOf(empty, 0, (0,), (1,), state=(empty, 0, (875_000_000,), (1,)))}
        entries = {"1": b""}
    path = craft(tmp_path / "x.pt", root, entries)
    with pytest.raises(CheckpointError) as excinfo:
        read_released_state_dict(path)
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("case", ["modules 1,000 deep", "modules in a cycle", "_modules is a list",
                                  "_parameters holds a string", "_parameters is an int"])
def test_crafted_module_trees_are_one_line_checkpoint_errors(tmp_path, case):
    """These ended in RecursionError and AttributeError tracebacks."""
    from tests.offline.crafted_checkpoints import Module, StorageRef, TensorOf, craft

    weight = TensorOf(StorageRef("0", 4), 0, (4,), (1,))
    if case == "modules 1,000 deep":
        root = Module(_parameters={"w": weight}, _modules={})
        for _ in range(1000):
            root = Module(_parameters={}, _modules={"m": root})
    elif case == "modules in a cycle":
        root = Module(_parameters={"w": weight})
        root.state["_modules"] = {"self": root}
    else:
        root = Module(**{
            "_modules is a list": {"_modules": [1, 2]},
            "_parameters holds a string": {"_parameters": {"w": "not a tensor"}},
            "_parameters is an int": {"_parameters": 7},
        }[case])
    path = craft(tmp_path / "m.pt", root, {"0": bytes(16)})
    with pytest.raises(CheckpointError) as excinfo:
        read_released_state_dict(path)
    assert "\n" not in str(excinfo.value)
