"""ZeroMQ ingest protocol, version 1: one audio frame = multipart ``[stream_id, header, payload]``.

- ``stream_id``: 1 to 128 bytes of UTF-8 from ``[A-Za-z0-9._:@/-]`` (it becomes part of event topics).
- ``header``: a JSON object: ``v`` (1), ``seq`` (int >= 0, strictly increasing per stream),
  ``sample_rate`` (8000..48000), ``channels`` (1 or 2), ``format`` (``s16le`` | ``f32le``), optional
  ``ts`` (sender's clock, seconds, informational), ``end`` (true on the stream's last frame) and
  ``token`` (1 to 128 printable ASCII characters: a secret the first frame binds the stream to; every
  later frame must carry the same one, else it is refused, ``not_owner``).
  Unknown keys are ignored, so v1 senders may add fields. Every known field is type-checked (a JSON
  ``true`` is not an integer, ``1.0`` is not a channel count); the header is at most 4 KiB and
  nested at most ``MAX_HEADER_DEPTH`` levels deep.
- ``payload``: interleaved little-endian samples; may be empty (a keep-alive, or a bare end marker).
  ``f32le`` samples must be finite (NaN or infinity rejects the frame, ``bad_samples``); finite
  samples outside [-1, 1] are clipped to it and counted (``IngestFrame.clipped``), so one loud
  sample costs nothing and no value can push the CM's features to infinity.

See docs/protocol.md. Parsing is pure: every problem is a ``ProtocolError`` whose ``reason`` is the
label the service counts rejections under.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamdet.errors import ProtocolError

PROTOCOL_VERSION = 1
FORMATS: dict[str, np.dtype] = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 48_000
CHANNELS = (1, 2)
MAX_HEADER_BYTES = 4_096
MAX_HEADER_DEPTH = 8
"""Deepest nesting of arrays/objects in a header; v1 headers are flat (depth 1)."""
STREAM_ID_PATTERN = re.compile(r"[A-Za-z0-9._:@/-]{1,128}")
TOKEN_PATTERN = re.compile(r"[\x21-\x7e]{1,128}")
"""A stream token: printable ASCII without spaces, as a bearer token or a random hex/base64 string."""

S16_SCALE = 32768.0
"""int16 → float32 divides by 2**15, exactly as libsndfile (soundfile) reads PCM_16 files."""


@dataclass(frozen=True)
class IngestFrame:
    """A parsed, validated frame; ``samples`` is float32 (frames, channels) in [-1, 1]."""

    stream_id: str
    seq: int
    sample_rate: int
    channels: int
    format: str
    samples: np.ndarray
    end: bool = False
    ts: float | None = None
    clipped: int = 0
    """f32le samples outside [-1, 1] that were clipped to it."""
    token: str | None = None
    """The sender's secret for this stream (header ``token``); None when the frame has none."""


def _not_an_integer(name: str, value: Any, reason: str) -> ProtocolError:
    return ProtocolError(reason, f"{name} must be an integer, got {value!r}")


def _nesting_depth(raw: bytes) -> int:
    """The deepest ``[``/``{`` nesting outside strings, found without parsing (``json.loads`` recurses)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_stream_id(raw: bytes) -> str:
    try:
        stream_id = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_stream_id", "not UTF-8") from exc
    if not STREAM_ID_PATTERN.fullmatch(stream_id):
        raise ProtocolError("bad_stream_id", f"{stream_id[:40]!r} is not 1-128 chars of [A-Za-z0-9._:@/-]")
    return stream_id


def parse_header(raw: bytes) -> dict[str, Any]:
    """Decode and validate the header JSON (without looking at the payload)."""
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError("bad_json", f"header of {len(raw)} bytes (max {MAX_HEADER_BYTES})")
    # The byte scan only when there are enough brackets to matter: v1 headers have one pair.
    if raw.count(b"[") + raw.count(b"{") > MAX_HEADER_DEPTH and _nesting_depth(raw) > MAX_HEADER_DEPTH:
        raise ProtocolError("bad_json", f"header nested deeper than {MAX_HEADER_DEPTH} levels")
    try:
        # json.loads(bytes) first guesses the encoding (``json.detect_encoding``: UTF-8, -16 or -32)
        # and decodes with "surrogatepass". A header starting with "{" and then a byte other than
        # NUL is UTF-8 by that very rule, so it is decoded here the same way: the guess was about a
        # third of json.loads' time on a v1 header. Anything else goes to json.loads as it came.
        text = raw.decode("utf-8", "surrogatepass") if raw[:1] == b"{" and raw[1:2] != b"\x00" else raw
        header = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ProtocolError("bad_json", str(exc)) from exc
    if not isinstance(header, dict):
        raise ProtocolError("bad_json", "header is not a JSON object")
    # Each field is looked up once (this runs for every frame of every stream). The checks, and
    # their order (which reason a header with several faults gets), are the protocol's.
    # ``type(x) is int`` is ``isinstance(x, int) and not isinstance(x, bool)`` for what json.loads
    # returns (no other int subclass): bool is an int in Python, and `true` is not a number.
    get = header.get
    version = get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError("bad_version", f"v={version!r}, this service speaks v{PROTOCOL_VERSION}")
    seq = get("seq")
    if type(seq) is not int:
        raise _not_an_integer("seq", seq, "bad_header")
    if seq < 0:
        raise ProtocolError("bad_header", f"seq must be >= 0, got {seq}")
    fmt = get("format")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ProtocolError("bad_format", f"format {fmt!r}, expected one of {sorted(FORMATS)}")
    rate = get("sample_rate")
    if type(rate) is not int:
        raise _not_an_integer("sample_rate", rate, "bad_sample_rate")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ProtocolError("bad_sample_rate", f"{rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")
    channels = get("channels")
    # ``1.0 in (1, 2)`` is True in Python: the type is checked first.
    if type(channels) is not int or channels not in CHANNELS:
        raise ProtocolError("bad_channels", f"channels={channels!r}, expected 1 or 2")
    if not isinstance(get("end", False), bool):
        raise ProtocolError("bad_header", "end must be a boolean")
    ts = get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts)):
        raise ProtocolError("bad_header", "ts must be a finite number")
    token = get("token")
    if token is not None and (not isinstance(token, str) or not TOKEN_PATTERN.fullmatch(token)):
        raise ProtocolError("bad_token", "token must be 1-128 printable ASCII characters without spaces")
    return header


def decode_payload(payload: bytes, fmt: str, channels: int) -> np.ndarray:
    """Interleaved little-endian samples → float32 (frames, channels) in [-1, 1]."""
    return decode_payload_clipped(payload, fmt, channels)[0]


def decode_payload_clipped(payload: bytes, fmt: str, channels: int) -> tuple[np.ndarray, int]:
    """``decode_payload`` and the number of f32le samples clipped into [-1, 1]."""
    dtype = FORMATS[fmt]
    frame_bytes = dtype.itemsize * channels
    if len(payload) % frame_bytes:
        raise ProtocolError("bad_payload_size", f"{len(payload)} bytes is not a multiple of {frame_bytes}")
    raw = np.frombuffer(payload, dtype=dtype)
    clipped = 0
    if fmt == "s16le":
        samples = raw.astype(np.float32)
        samples /= np.float32(S16_SCALE)  # in place: the same float32 division, one array fewer per frame
    else:
        samples = raw.astype(np.float32)  # copy: frombuffer is read-only and tied to the message
        if not np.isfinite(samples).all():
            raise ProtocolError("bad_samples", "NaN or infinite samples")
        outside = np.abs(samples) > 1.0
        clipped = int(np.count_nonzero(outside))
        if clipped:
            np.clip(samples, -1.0, 1.0, out=samples)
    return samples.reshape(-1, channels), clipped


def parse_parts(parts: list[bytes], max_payload_bytes: int) -> tuple[str, dict[str, Any], np.ndarray, int]:
    """``parse_frame`` without building the ``IngestFrame``: the stream id, the validated header,
    the samples and the clipped count. For the ingest's per-frame path, where the frozen dataclass
    (ten ``object.__setattr__`` calls) was a measurable share of a frame's cost."""
    if len(parts) != 3:
        raise ProtocolError("malformed", f"{len(parts)} parts, expected 3 (stream_id, header, payload)")
    raw_id, raw_header, payload = parts
    stream_id = parse_stream_id(raw_id)
    if len(payload) > max_payload_bytes:
        raise ProtocolError("oversize", f"payload of {len(payload)} bytes (max {max_payload_bytes})")
    header = parse_header(raw_header)
    samples, clipped = decode_payload_clipped(payload, header["format"], header["channels"])
    return stream_id, header, samples, clipped


def parse_frame(parts: list[bytes], max_payload_bytes: int) -> IngestFrame:
    """Validate a multipart message and decode its samples; raises ProtocolError(reason)."""
    stream_id, header, samples, clipped = parse_parts(parts, max_payload_bytes)
    return IngestFrame(
        stream_id=stream_id,
        seq=header["seq"],
        sample_rate=header["sample_rate"],
        channels=header["channels"],
        format=header["format"],
        samples=samples,
        end=header.get("end", False),
        ts=header.get("ts"),
        clipped=clipped,
        token=header.get("token"),
    )


def encode_payload(samples: np.ndarray, fmt: str) -> bytes:
    """float32 (frames, channels) or (frames,) in [-1, 1] → interleaved little-endian bytes.

    s16le rounds ``x * 32768`` and clips, so audio read from a PCM_16 file goes back to the very
    same integers (and the service recovers the very same floats).
    """
    if fmt == "s16le":
        ints = np.clip(np.rint(np.asarray(samples, dtype=np.float64) * S16_SCALE), -32768, 32767)
        return ints.astype("<i2").tobytes()
    if fmt == "f32le":
        return np.asarray(samples, dtype="<f4").tobytes()
    raise ValueError(f"unknown format {fmt!r}")


def encode_frame(
    stream_id: str,
    seq: int,
    samples: np.ndarray,
    sample_rate: int,
    fmt: str = "s16le",
    end: bool = False,
    ts: float | None = None,
    token: str | None = None,
) -> list[bytes]:
    """Build the multipart message for one frame; ``samples`` is (frames, channels) or mono (frames,)."""
    samples = np.asarray(samples)
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "seq": seq, "sample_rate": sample_rate,
                              "channels": channels, "format": fmt}
    if end:
        header["end"] = True
    if ts is not None:
        header["ts"] = ts
    if token is not None:
        header["token"] = token
    return [stream_id.encode("utf-8"), json.dumps(header).encode("utf-8"), encode_payload(samples, fmt)]
