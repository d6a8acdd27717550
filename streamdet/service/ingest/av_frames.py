"""Decoded PyAV audio frames as the registry takes them (apart from WHIP, which loads aiortc, so
that the RTP ingest's decoders can share it without that import)."""

from __future__ import annotations

import av
import numpy as np


def frame_to_samples(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame as float32 (frames, channels) in [-1, 1] (int16 read as ``x / 32768``)."""
    channels = len(frame.layout.channels)
    data = frame.to_ndarray()
    data = data.T if frame.format.is_planar else data.reshape(-1, channels)
    if data.dtype == np.int16:
        return data.astype(np.float32) / np.float32(32768.0)
    if data.dtype == np.int32:
        return (data / 2.0**31).astype(np.float32)
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    return data.astype(np.float32)
