"""G.711 μ-law and A-law (ITU-T G.711): the reference encoder's segment search and truncation,
vectorised over numpy arrays of int16 PCM and uint8 codes. Used by the RTP ingest (PCMU, PCMA),
``streamdet bench`` (μ-law senders) and the telephone channels of ``offline.channels``."""

from __future__ import annotations

import numpy as np

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def ulaw_encode(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM -> G.711 μ-law bytes (uint8, bits inverted as transmitted)."""
    value = pcm.astype(np.int32) >> 2  # μ-law codes 14-bit magnitudes
    negative = value < 0
    mask = np.where(negative, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(value), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = np.searchsorted(_ULAW_SEG_END, magnitude, side="left")
    in_range = segment < 8
    segment = np.minimum(segment, 7)
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0xF)
    code = np.where(in_range, code, 0x7F)
    return (code ^ mask).astype(np.uint8)


def ulaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 μ-law bytes -> int16 PCM (the reconstruction levels of G.711 Table 2a)."""
    code = ~codes.astype(np.int32) & 0xFF
    t = (((code & 0xF) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def alaw_encode(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM -> G.711 A-law bytes (uint8, even bits inverted as transmitted)."""
    value = pcm.astype(np.int32) >> 3  # A-law codes 13-bit magnitudes
    negative = value < 0
    mask = np.where(negative, 0x55, 0xD5)
    magnitude = np.where(negative, -value - 1, value)
    segment = np.searchsorted(_ALAW_SEG_END, magnitude, side="left")  # always < 8 for int16 input
    shift = np.where(segment < 2, 1, segment)
    code = (segment << 4) | ((magnitude >> shift) & 0xF)
    return (code ^ mask).astype(np.uint8)


def alaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 A-law bytes -> int16 PCM (the reconstruction levels of G.711 Table 1a)."""
    code = codes.astype(np.int32) ^ 0x55
    segment = (code & 0x70) >> 4
    t = (code & 0xF) << 4
    t = np.where(segment == 0, t + 8, (t + 0x108) << np.maximum(segment - 1, 0))
    return np.where(code & 0x80, t, -t).astype(np.int16)
