"""The messages of the media-stream WebSocket ingest, parsed into plain values (no I/O).

Two dialects share one set of rules:

- **Twilio Media Streams** (JSON text messages): ``connected``, ``start`` (call and stream ids, the
  media format), ``media`` (base64 G.711 μ-law at 8 kHz and a track name), ``mark``, ``dtmf``,
  ``stop``.
- **Audio fork** (the binary variant of FreeSWITCH's mod_audio_fork and similar forks): one JSON
  ``start`` text message naming the call, the sample rate and the channels, then binary frames of
  interleaved little-endian 16-bit PCM; two channels are two tracks (inbound, outbound).

Every refusal is a ``ProtocolError`` whose reason labels ``streamdet_ingest_rejects_total``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamdet.errors import ProtocolError
from streamdet.service.frames import STREAM_ID_PATTERN
from streamdet.service.ingest.g711 import alaw_decode, ulaw_decode

TRACKS = ("inbound", "outbound")
TWILIO_ENCODINGS = {"audio/x-mulaw": ulaw_decode, "audio/x-alaw": alaw_decode}
TWILIO_EVENTS = ("connected", "start", "media", "mark", "dtmf", "stop")
FORK_RATES = range(8_000, 48_001)


@dataclass(frozen=True)
class CallStart:
    """What a ``start`` message says about the call."""

    call_id: str
    """The call's id: stream ids are ``<call_id>/<track>``."""
    sample_rate: int
    channels: int
    tracks: tuple[str, ...]
    """Twilio: the tracks announced; fork: the track of each channel, in channel order."""
    encoding: str
    """``audio/x-mulaw``, ``audio/x-alaw`` (Twilio dialect) or ``audio/l16`` (fork)."""
    stream_sid: str = ""
    token: str | None = None
    """A token carried in the start message (Twilio ``customParameters.token``, fork ``token``)."""
    extra: dict[str, Any] = field(default_factory=dict)


def parse_json(text: str) -> dict[str, Any]:
    """A text message as a JSON object with a string ``event``."""
    try:
        message = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError("invalid_json", f"not JSON: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        raise ProtocolError("invalid_json", "not a JSON object with a string 'event'")
    return message


def _call_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ProtocolError("bad_start", f"no {what} in the start message")
    # The call id plus "/outbound" must still be a valid stream id.
    if len(value) > 119 or not STREAM_ID_PATTERN.fullmatch(value):
        raise ProtocolError("bad_start", f"{what} {value[:40]!r} is not 1-119 chars of [A-Za-z0-9._:@/-]")
    return value


def twilio_start(message: dict[str, Any]) -> CallStart:
    """A Twilio ``start`` message: ``start.callSid`` names the call (else ``streamSid``)."""
    start = message.get("start")
    if not isinstance(start, dict):
        raise ProtocolError("bad_start", "'start' is not an object")
    stream_sid = start.get("streamSid") or message.get("streamSid") or ""
    call_id = _call_id(start.get("callSid") or stream_sid, "callSid or streamSid")
    media_format = start.get("mediaFormat") or {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    if not isinstance(media_format, dict):
        raise ProtocolError("bad_start", "'mediaFormat' is not an object")
    encoding = media_format.get("encoding")
    if encoding not in TWILIO_ENCODINGS:
        raise ProtocolError("unsupported_format", f"encoding {encoding!r} (supported: {', '.join(TWILIO_ENCODINGS)})")
    rate, channels = media_format.get("sampleRate", 8000), media_format.get("channels", 1)
    if rate != 8000 or channels != 1:
        raise ProtocolError("unsupported_format", f"{rate} Hz x {channels} channel(s) (G.711 is 8000 Hz mono)")
    tracks = start.get("tracks") or ["inbound"]
    if not isinstance(tracks, list) or not set(tracks) <= set(TRACKS):
        raise ProtocolError("bad_start", f"tracks {tracks!r} (known: inbound, outbound)")
    custom = start.get("customParameters") or {}
    token = custom.get("token") if isinstance(custom, dict) else None
    return CallStart(call_id, 8000, 1, tuple(tracks), encoding, str(stream_sid),
                     token if isinstance(token, str) else None)


def twilio_media(message: dict[str, Any], start: CallStart) -> tuple[str, np.ndarray]:
    """A Twilio ``media`` message: its track and its samples, float32 (frames, 1)."""
    media = message.get("media")
    if not isinstance(media, dict):
        raise ProtocolError("bad_media", "'media' is not an object")
    track = media.get("track", "inbound")
    if track not in TRACKS:
        raise ProtocolError("unknown_track", f"track {track!r} (known: inbound, outbound)")
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise ProtocolError("bad_media", "no 'payload' string")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError("invalid_base64", f"payload: {exc}") from exc
    return track, TWILIO_ENCODINGS[start.encoding](raw).reshape(-1, 1)


def fork_start(message: dict[str, Any]) -> CallStart:
    """An audio-fork ``start``: ``{"event": "start", "call_id", "sample_rate", "channels", "tracks"?}``."""
    call_id = _call_id(message.get("call_id"), "call_id")
    rate, channels = message.get("sample_rate"), message.get("channels", 1)
    if not isinstance(rate, int) or rate not in FORK_RATES:
        raise ProtocolError("unsupported_format", f"sample_rate {rate!r} (8000 to 48000)")
    if channels not in (1, 2):
        raise ProtocolError("unsupported_format", f"channels {channels!r} (1 or 2)")
    tracks = message.get("tracks") or list(TRACKS[:channels])
    if not isinstance(tracks, list) or len(tracks) != channels or not set(tracks) <= set(TRACKS) \
            or len(set(tracks)) != len(tracks):
        raise ProtocolError("bad_start", f"tracks {tracks!r}: one distinct track (inbound, outbound) per channel")
    token = message.get("token")
    return CallStart(call_id, rate, channels, tuple(tracks), "audio/l16",
                     token=token if isinstance(token, str) else None)


def fork_frame(data: bytes, start: CallStart) -> dict[str, np.ndarray]:
    """A binary frame of interleaved s16le: each track's samples, float32 (frames, 1)."""
    if len(data) % (2 * start.channels):
        raise ProtocolError("bad_frame_length", f"{len(data)} bytes is not whole {start.channels}-channel s16 frames")
    pcm = np.frombuffer(data, dtype="<i2").reshape(-1, start.channels).astype(np.float32) / 32768.0
    return {track: pcm[:, [c]] for c, track in enumerate(start.tracks)}
