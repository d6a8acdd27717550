"""Fuzzing ZeroMQ frame parsing: whatever the three parts hold, ``parse_frame`` returns a valid frame
or raises ``ProtocolError``, never anything else (anything else would be an ``internal_error``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamdet.errors import ProtocolError
from streamdet.service.frames import CHANNELS, parse_frame

pytestmark = pytest.mark.fuzz
LIMIT = 4096
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)
FIELDS = ("v", "seq", "sample_rate", "channels", "format", "end", "ts")
VALID = {"v": 1, "seq": 0, "sample_rate": 16000, "channels": 1, "format": "f32le"}


def check(parts: list[bytes]) -> None:
    try:
        frame = parse_frame(parts, LIMIT)
    except ProtocolError:
        return
    assert frame.channels in CHANNELS and type(frame.channels) is int
    assert frame.samples.dtype == np.float32 and frame.samples.shape[1] == frame.channels
    assert np.isfinite(frame.samples).all() and np.abs(frame.samples).max(initial=0) <= 1.0


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=4))
def test_arbitrary_parts(parts: list[bytes]) -> None:
    check(parts)


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=7), st.binary(max_size=64))
def test_valid_header_with_fields_replaced(replaced: dict, payload: bytes) -> None:
    header = {**VALID, **replaced}
    check([b"s", json.dumps(header).encode(), payload])


@FUZZ
@given(st.binary(max_size=512), st.integers(0, 40))
def test_header_bytes_and_nesting(raw: bytes, depth: int) -> None:
    check([b"s", raw, b""])
    check([b"s", b'{"v":1,"x":' + b"[" * depth + raw[:32] + b"]" * depth + b"}", b""])


@FUZZ
@given(st.lists(st.floats(width=32), max_size=32), st.sampled_from(["s16le", "f32le"]))
def test_any_float32_payload(samples: list[float], fmt: str) -> None:
    check([b"s", json.dumps({**VALID, "format": fmt}).encode(), np.array(samples, "<f4").tobytes()])
