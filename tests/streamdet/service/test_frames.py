"""Protocol v1 parsing: every bad case is a ProtocolError with its counter label."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamdet.errors import ProtocolError
from streamdet.service.frames import (
    decode_payload,
    encode_frame,
    encode_payload,
    parse_frame,
    parse_header,
    parse_parts,
)

LIMIT = 1 << 20


def header(**fields) -> bytes:
    base = {"v": 1, "seq": 0, "sample_rate": 16000, "channels": 1, "format": "s16le"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def test_roundtrip_stereo_f32() -> None:
    samples = np.random.default_rng(0).uniform(-1, 1, (100, 2)).astype(np.float32)
    frame = parse_frame(encode_frame("s.1", 7, samples, 44100, "f32le", end=True, ts=1.5), LIMIT)
    assert (frame.stream_id, frame.seq, frame.sample_rate, frame.channels, frame.end, frame.ts) == (
        "s.1", 7, 44100, 2, True, 1.5)
    np.testing.assert_array_equal(frame.samples, samples)


def test_s16le_scaling_matches_soundfile() -> None:
    ints = np.array([-32768, -1, 0, 1, 32767], dtype="<i2")
    decoded = decode_payload(ints.tobytes(), "s16le", 1)
    np.testing.assert_array_equal(decoded[:, 0], ints.astype(np.float32) / np.float32(32768.0))
    # float → s16le → float is the identity on values that came from 16-bit PCM
    np.testing.assert_array_equal(decode_payload(encode_payload(decoded, "s16le"), "s16le", 1), decoded)


def test_empty_payload_is_allowed() -> None:
    frame = parse_frame([b"a", header(end=True), b""], LIMIT)
    assert frame.samples.shape == (0, 1) and frame.end


def test_unknown_header_keys_are_ignored() -> None:
    raw = json.loads(header())
    raw["future_field"] = {"x": 1}
    assert parse_frame([b"a", json.dumps(raw).encode(), b"\0\0"], LIMIT).samples.shape == (1, 1)


BAD = {
    "malformed": [b"a", header()],
    "malformed_4": [b"a", header(), b"", b""],
    "bad_stream_id": [b"bad id!", header(), b""],
    "bad_stream_id_utf8": [b"\xff\xfe", header(), b""],
    "bad_json": [b"a", b"{not json", b""],
    "bad_json_array": [b"a", b"[1, 2]", b""],
    "bad_version": [b"a", header(v=2), b""],
    "bad_header_seq": [b"a", header(seq=-1), b""],
    "bad_header_seq_missing": [b"a", header(seq=None), b""],
    "bad_header_end": [b"a", header(end="yes"), b""],
    "bad_header_ts": [b"a", header(ts="now"), b""],
    "bad_format": [b"a", header(format="mp3"), b""],
    "bad_sample_rate": [b"a", header(sample_rate=96000), b""],
    "bad_sample_rate_bool": [b"a", header(sample_rate=True), b""],
    "bad_channels": [b"a", header(channels=6), b""],
    "bad_payload_size": [b"a", header(channels=2), b"\0" * 6],
    "bad_samples": [b"a", header(format="f32le"), np.array([np.nan], "<f4").tobytes()],
    "oversize": [b"a", header(), b"\0" * (LIMIT + 2)],
    "bad_token_number": [b"a", header(token=12345), b""],
    "bad_token_empty": [b"a", header(token=""), b""],
    "bad_token_space": [b"a", header(token="two words"), b""],
    "bad_token_long": [b"a", header(token="x" * 129), b""],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_frames_are_refused_with_their_reason(case: str) -> None:
    with pytest.raises(ProtocolError) as excinfo:
        parse_frame(BAD[case], LIMIT)
    expected = next(r for r in ("bad_stream_id", "bad_json", "bad_version", "bad_header", "bad_format", "bad_token",
                                "bad_sample_rate", "bad_channels", "bad_payload_size", "bad_samples",
                                "oversize", "malformed") if case.startswith(r))
    assert excinfo.value.reason == expected


def test_a_stream_token_round_trips_and_is_optional() -> None:
    parts = encode_frame("a", 0, np.zeros(4, np.float32), 16000, token="Zm9v.bar-~!")
    assert parse_frame(parts, LIMIT).token == "Zm9v.bar-~!"
    assert parse_frame(encode_frame("a", 0, np.zeros(4, np.float32), 16000), LIMIT).token is None


HEADER_TEXT = '{"v": 1, "seq": 3, "sample_rate": 16000, "channels": 1, "format": "s16le", "note": "\\u00e9\\ud800"}'
ENCODED_HEADERS = {
    "utf-8": HEADER_TEXT.encode(),
    "utf-8, raw non-ASCII": HEADER_TEXT.replace("\\u00e9", "\u00e9").encode(),
    "utf-8, lone surrogate": HEADER_TEXT.replace("\\ud800", "\ud800").encode("utf-8", "surrogatepass"),
    "utf-8 with BOM": HEADER_TEXT.encode("utf-8-sig"),
    "utf-16-le": HEADER_TEXT.encode("utf-16-le"),
    "utf-16-be": HEADER_TEXT.encode("utf-16-be"),
    "utf-16 with BOM": HEADER_TEXT.encode("utf-16"),
    "utf-32-le": HEADER_TEXT.encode("utf-32-le"),
    "leading space": b" " + HEADER_TEXT.encode(),
    "invalid utf-8": HEADER_TEXT.encode().replace(b"s16le", b"s16\xffe"),
    "truncated": HEADER_TEXT.encode()[:40],
    "brace alone": b"{",
    "brace and NUL": b"{\x00",
}


@pytest.mark.parametrize("name", sorted(ENCODED_HEADERS))
def test_header_bytes_decode_exactly_as_json_loads_decodes_them(name: str) -> None:
    """``parse_header`` decodes a plain UTF-8 header itself (a shortcut): every encoding json.loads
    accepts (UTF-8/16/32, with or without BOM) must still give what json.loads gives, and every
    header it refuses must still be refused (``bad_json``)."""
    raw = ENCODED_HEADERS[name]
    try:
        expected = json.loads(raw)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both
        expected = None
    if expected is None or not isinstance(expected, dict):
        with pytest.raises(ProtocolError) as excinfo:
            parse_header(raw)
        assert excinfo.value.reason == "bad_json"
    else:
        assert parse_header(raw) == expected


def test_parse_parts_is_parse_frame_without_the_dataclass() -> None:
    parts = encode_frame("s-1", 7, np.array([[0.5], [-0.25]], np.float32), 8000, "f32le", end=True, ts=1.5,
                         token="t0k")
    frame = parse_frame(parts, LIMIT)
    stream_id, header_fields, samples, clipped = parse_parts(parts, LIMIT)
    assert (stream_id, clipped) == (frame.stream_id, frame.clipped)
    assert (header_fields["seq"], header_fields["sample_rate"], header_fields["channels"], header_fields["format"],
            header_fields.get("end"), header_fields.get("ts"), header_fields.get("token")) == \
        (frame.seq, frame.sample_rate, frame.channels, frame.format, frame.end, frame.ts, frame.token)
    np.testing.assert_array_equal(samples, frame.samples)
