"""Fuzzing checkpoint import: mutated pickles and archives are read or refused with a
``CheckpointError``, never another exception, and nothing the file names ever runs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offline.checkpoint import read_released_state_dict
from streamdet.errors import CheckpointError
from tests.offline.crafted_checkpoints import Module, StorageRef, TensorOf, craft, pickle_bytes

pytestmark = pytest.mark.fuzz
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])


def _base_root() -> Module:
    weight = StorageRef("0", 8)
    return Module(_parameters={"w": TensorOf(weight, 0, (2, 4), (4, 1))}, _buffers={},
                  _modules={"fc": Module(_parameters={"b": TensorOf(weight, 4, (4,), (1,))}, _modules={})})


BASE_PICKLE = pickle_bytes(_base_root())
STORAGES = {"0": bytes(32)}


def check(path: Path) -> None:
    try:
        state, _ = read_released_state_dict(path)
    except CheckpointError as exc:
        assert "\n" not in str(exc)
        return
    assert state


def test_the_base_checkpoint_reads(tmp_path: Path) -> None:
    state, top = read_released_state_dict(craft(tmp_path / "base.pt", None, STORAGES, data_pkl=BASE_PICKLE))
    assert sorted(state) == ["fc.b", "w"] and top == "model.LCNN"


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(BASE_PICKLE) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_pickle_with_bytes_changed(tmp_path: Path, changes: list[tuple[int, int]]) -> None:
    data = bytearray(BASE_PICKLE)
    for index, value in changes:
        data[index] = value
    check(craft(tmp_path / "m.pt", None, STORAGES, data_pkl=bytes(data)))


@FUZZ
@given(st.integers(0, len(BASE_PICKLE)), st.binary(max_size=24))
def test_pickle_truncated_or_with_bytes_inserted(tmp_path: Path, cut: int, inserted: bytes) -> None:
    check(craft(tmp_path / "t.pt", None, STORAGES, data_pkl=BASE_PICKLE[:cut] + inserted + BASE_PICKLE[cut:][:8]))


@FUZZ
@given(st.integers(0, 64), st.integers(-4, 64), st.lists(st.integers(-2, 1 << 40), min_size=1, max_size=3),
       st.lists(st.integers(-2, 1 << 40), min_size=1, max_size=3), st.binary(max_size=64))
def test_storage_and_view_claims(tmp_path: Path, numel: int, offset: int, size: list[int], stride: list[int],
                                 entry: bytes) -> None:
    root = {"w": TensorOf(StorageRef("0", numel), offset, tuple(size), tuple(stride))}
    check(craft(tmp_path / "s.pt", root, {"0": entry}))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), min_size=1, max_size=6))
def test_archive_with_bytes_changed(tmp_path: Path, changes: list[tuple[int, int]]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", BASE_PICKLE)
        archive.writestr("archive/data/0", STORAGES["0"])
    data = bytearray(buffer.getvalue())
    for index, value in changes:
        data[index % len(data)] = value
    path = tmp_path / "z.pt"
    path.write_bytes(bytes(data))
    check(path)
