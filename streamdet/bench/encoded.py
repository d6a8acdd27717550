"""The load senders' ZeroMQ frames, encoded ahead: the very bytes ``encode_frame`` gives, for less CPU.

The load client shares its machine with the service it measures, so every CPU millisecond it spends
per frame is taken from the service (issue 16). A frame is ``[stream id, header, payload]``
(``streamdet.service.frames``); of all that, only the header's ``ts`` (the sender's clock at send
time) cannot be known ahead. ``encode_frame``'s header ends with ``ts``, so:

- ``HeaderPrefixes``: a header's bytes up to ``ts``'s value, per ``(seq, end)``, cached (every stream
  of a step, and every segment of a soak, numbers its frames alike);
- ``stamp``: the header completed at send time (one bytes formatting);
- ``PayloadBlocks``: one stream's payloads, a block of frames at a time (one numpy pass per block,
  not one per frame), only the current block held: an hour-long soak holds seconds of audio, not
  an hour of frames;
- ``EncodedStream``: the three together for one stream of a load step.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from streamdet.service.frames import FORMATS, PROTOCOL_VERSION, encode_payload

DEFAULT_BLOCK_FRAMES = 1_000
"""Frames per payload block unless told: 20 s of 20-ms frames, ~0.7 MB of s16le per stream (the
soak's 24 endless streams: ~17 MB), the next block encoded when a stream reaches it (one numpy pass
per 20 s of audio)."""
FRAME_OVERHEAD_BYTES = 40
"""What a frame's payload costs besides its bytes (a ``bytes`` object and its list slot)."""
HEADER_CACHE_SIZE = 1 << 16
"""Distinct ``(seq, end)`` headers kept: 21 minutes of 20-ms frames."""


class HeaderPrefixes:
    """``encode_frame``'s header for ``(seq, end)`` up to the value of its ``ts``, which comes last
    (no token): ``b'{"v": 1, "seq": 7, ..., "format": "s16le", "ts": '``."""

    def __init__(self, sample_rate: int, channels: int = 1, fmt: str = "s16le") -> None:
        self.sample_rate, self.channels, self.fmt = sample_rate, channels, fmt
        self._cached = functools.lru_cache(maxsize=HEADER_CACHE_SIZE)(self._prefix)

    def __call__(self, seq: int, end: bool) -> bytes:
        return self._cached(seq, end)

    def _prefix(self, seq: int, end: bool) -> bytes:
        # The same dict, in the same key order, as encode_frame builds; json.dumps ends it with "}".
        header: dict[str, Any] = {"v": PROTOCOL_VERSION, "seq": seq, "sample_rate": self.sample_rate,
                                  "channels": self.channels, "format": self.fmt}
        if end:
            header["end"] = True
        return json.dumps(header)[:-1].encode("utf-8") + b', "ts": '


def stamp(prefix: bytes, ts: float) -> bytes:
    """The whole header: ``prefix`` and ``ts`` as ``json.dumps`` writes a float (its ``repr``)."""
    return b"%s%r}" % (prefix, ts)


class PayloadBlocks:
    """Frame ``k``'s payload of one stream cut into ``chunk``-sample frames: ``encode_payload`` of
    ``audio[k * chunk:(k + 1) * chunk]`` (the last frame may be shorter; with ``wrap`` the audio loops
    and every frame is whole). Frames are asked for in increasing order; the block that holds ``k`` is
    encoded when first asked for, and only it is kept."""

    def __init__(self, audio: np.ndarray, chunk: int, fmt: str = "s16le",
                 block_frames: int = DEFAULT_BLOCK_FRAMES, wrap: bool = False) -> None:
        if audio.ndim != 1:
            raise ValueError("the load senders send mono audio")
        self.audio, self.chunk, self.fmt, self.wrap = audio, chunk, fmt, wrap
        self.block_frames = max(1, block_frames)
        self.frames = None if wrap else max(1, -(-len(audio) // chunk))
        """Frames of the stream (None: endless, ``wrap``)."""
        self._first = 0
        self._block: list[bytes] = []

    def __getitem__(self, k: int) -> bytes:
        index = k - self._first
        if not 0 <= index < len(self._block):
            self._encode(k)
            index = 0
        return self._block[index]

    def _encode(self, k: int) -> None:
        if self.frames is not None and not 0 <= k < self.frames:
            raise IndexError(k)
        last = k + self.block_frames if self.frames is None else min(k + self.block_frames, self.frames)
        if self.wrap:
            samples = self.audio.take(np.arange(k * self.chunk, last * self.chunk), mode="wrap")
        else:
            samples = self.audio[k * self.chunk:last * self.chunk]
        # encode_payload works sample by sample, so one pass over the block cut in frames afterwards
        # gives each frame's very bytes.
        data = encode_payload(samples, self.fmt)
        width = self.chunk * FORMATS[self.fmt].itemsize
        self._block = [data[j * width:(j + 1) * width] for j in range(last - k)]
        self._first = k


class EncodedStream:
    """One ZeroMQ stream of a load step: frame ``k`` as ``encode_frame(stream_id, k, audio[k * chunk:
    (k + 1) * chunk], sample_rate, fmt, end=<last frame>, ts=ts)`` would give it, from ``message``.
    The first block is encoded here, before the step's clock starts."""

    def __init__(self, stream_id: str, audio: np.ndarray, chunk: int, headers: HeaderPrefixes,
                 block_frames: int = DEFAULT_BLOCK_FRAMES) -> None:
        self.stream_id = stream_id.encode("utf-8")
        self.headers = headers
        self.payloads = PayloadBlocks(audio, chunk, headers.fmt, block_frames)
        self.frames: int = self.payloads.frames  # type: ignore[assignment]
        self.payloads[0]
        for k in range(min(self.frames, block_frames)):
            headers(k, k == self.frames - 1)

    def message(self, k: int, ts: float) -> list[bytes]:
        return [self.stream_id, stamp(self.headers(k, k == self.frames - 1), ts), self.payloads[k]]
