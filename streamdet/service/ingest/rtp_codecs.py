"""RTP payload formats (RFC 3551 and dynamic ones named like SDP's ``a=rtpmap``) and their decoders.

A format is ``encoding/clock rate[/channels]``: ``PCMU/8000``, ``opus/48000/2``. The static payload
types of RFC 3551 are known; dynamic ones (96-127) come from settings. G.711 is decoded with tables
(``streamdet.g711``), L16 (big-endian) with numpy, G.722 and Opus with PyAV's decoders. Comfort
noise and DTMF events (``CN``, ``telephone-event``) carry no speech: they are recognised and skipped,
and the timestamp gap they leave is filled with silence like a lost packet's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import av
import numpy as np

from streamdet.errors import ConfigError, ProtocolError
from streamdet.g711 import alaw_decode, ulaw_decode
from streamdet.service.ingest.av_frames import frame_to_samples

AUDIO_ENCODINGS = {"pcmu", "pcma", "g722", "l16", "opus"}
SKIPPED_ENCODINGS = {"cn", "telephone-event"}


@dataclass(frozen=True)
class PayloadFormat:
    encoding: str
    """Lower case: ``pcmu``, ``pcma``, ``g722``, ``l16``, ``opus``, ``cn``, ``telephone-event``."""
    clock_rate: int
    channels: int = 1

    @property
    def sample_rate(self) -> int:
        """The decoded audio's rate: the clock rate, except G.722's (16 kHz audio, an 8 kHz clock
        kept for historical reasons, RFC 3551 §4.5.2)."""
        return 16_000 if self.encoding == "g722" else self.clock_rate

    @property
    def carries_audio(self) -> bool:
        return self.encoding in AUDIO_ENCODINGS

    def __str__(self) -> str:
        return f"{self.encoding}/{self.clock_rate}/{self.channels}"


STATIC_PAYLOAD_TYPES: dict[int, PayloadFormat] = {
    0: PayloadFormat("pcmu", 8_000),
    8: PayloadFormat("pcma", 8_000),
    9: PayloadFormat("g722", 8_000),
    10: PayloadFormat("l16", 44_100, 2),
    11: PayloadFormat("l16", 44_100),
    13: PayloadFormat("cn", 8_000),
}


def parse_format(text: str) -> PayloadFormat:
    """``opus/48000/2`` → PayloadFormat; ConfigError for an encoding this ingest cannot decode."""
    parts = text.strip().split("/")
    encoding = parts[0].lower()
    if encoding not in AUDIO_ENCODINGS | SKIPPED_ENCODINGS:
        raise ConfigError(f"RTP format {text!r}: unknown encoding {parts[0]!r} "
                          f"(known: {', '.join(sorted(AUDIO_ENCODINGS | SKIPPED_ENCODINGS))})")
    try:
        clock_rate = int(parts[1])
        channels = int(parts[2]) if len(parts) > 2 else 1
    except (IndexError, ValueError):
        raise ConfigError(f"RTP format {text!r}: expected encoding/clock-rate[/channels]") from None
    if len(parts) > 3 or clock_rate <= 0 or not 1 <= channels <= 8:
        raise ConfigError(f"RTP format {text!r}: expected encoding/clock-rate[/channels], 1-8 channels")
    if encoding == "opus" and (clock_rate != 48_000 or channels > 2):
        raise ConfigError(f"RTP format {text!r}: Opus is opus/48000/2 (or /1 to decode to mono)")
    return PayloadFormat(encoding, clock_rate, channels)


class Decoder(Protocol):
    def decode(self, payload: bytes) -> np.ndarray:
        """One packet's payload → float32 (frames, channels); ProtocolError if undecodable."""


class G711Decoder:
    def __init__(self, fmt: PayloadFormat) -> None:
        decode = ulaw_decode if fmt.encoding == "pcmu" else alaw_decode
        self._table = decode(np.arange(256, dtype=np.uint8)).astype(np.float32) / np.float32(32768.0)
        self._channels = fmt.channels

    def decode(self, payload: bytes) -> np.ndarray:
        if len(payload) % self._channels:
            raise ProtocolError("rtp_payload_size", f"{len(payload)} bytes for {self._channels} channels")
        return self._table[np.frombuffer(payload, dtype=np.uint8)].reshape(-1, self._channels)


class L16Decoder:
    def __init__(self, fmt: PayloadFormat) -> None:
        self._channels = fmt.channels

    def decode(self, payload: bytes) -> np.ndarray:
        if len(payload) % (2 * self._channels):
            raise ProtocolError("rtp_payload_size", f"{len(payload)} bytes of L16 x{self._channels}")
        pcm = np.frombuffer(payload, dtype=">i2").astype(np.float32) / np.float32(32768.0)
        return pcm.reshape(-1, self._channels)


class AvDecoder:
    """G.722 or Opus through PyAV (libavcodec); one decoder per source, as both keep state."""

    def __init__(self, fmt: PayloadFormat) -> None:
        self._codec = av.CodecContext.create("g722" if fmt.encoding == "g722" else "opus", "r")
        self._codec.sample_rate = fmt.sample_rate
        self._codec.layout = "stereo" if fmt.channels == 2 else "mono"
        self._channels = fmt.channels

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:  # an empty packet would tell libavcodec the stream is over
            return np.zeros((0, self._channels), np.float32)
        try:
            frames = self._codec.decode(av.Packet(payload))
        except av.FFmpegError as exc:
            raise ProtocolError("rtp_decode", str(exc)) from exc
        if not frames:
            return np.zeros((0, self._channels), np.float32)
        return np.concatenate([frame_to_samples(frame) for frame in frames])


def make_decoder(fmt: PayloadFormat) -> Decoder:
    if fmt.encoding in ("pcmu", "pcma"):
        return G711Decoder(fmt)
    if fmt.encoding == "l16":
        return L16Decoder(fmt)
    if fmt.encoding in ("g722", "opus"):
        return AvDecoder(fmt)
    raise ValueError(f"{fmt} carries no audio")
