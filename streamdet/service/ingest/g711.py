"""G.711 μ-law and A-law (ITU-T G.711) as numpy lookup tables: one byte in, one float32 sample out.

Decoding is a 256-entry table lookup; encoding (for test and load clients) searches the sorted
table, which gives the nearest code for every 16-bit sample.
"""

from __future__ import annotations

import numpy as np


def _ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF  # μ-law bytes travel bit-inverted
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55  # A-law inverts the even bits
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


ULAW_TO_PCM16 = _ulaw_table()
ALAW_TO_PCM16 = _alaw_table()
_ULAW_F32 = (ULAW_TO_PCM16 / 32768.0).astype(np.float32)
_ALAW_F32 = (ALAW_TO_PCM16 / 32768.0).astype(np.float32)


def ulaw_decode(payload: bytes) -> np.ndarray:
    """μ-law bytes to float32 samples in [-1, 1)."""
    return _ULAW_F32[np.frombuffer(payload, dtype=np.uint8)]


def alaw_decode(payload: bytes) -> np.ndarray:
    """A-law bytes to float32 samples in [-1, 1)."""
    return _ALAW_F32[np.frombuffer(payload, dtype=np.uint8)]


def _encoder(table: np.ndarray):
    order = np.argsort(table, kind="stable")
    ordered = table[order].astype(np.int32)
    midpoints = (ordered[1:] + ordered[:-1]) / 2.0

    def encode(samples: np.ndarray) -> bytes:
        pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767)
        return order[np.searchsorted(midpoints, pcm)].astype(np.uint8).tobytes()

    return encode


ulaw_encode = _encoder(ULAW_TO_PCM16)
"""float32 samples in [-1, 1] to μ-law bytes (the nearest code)."""
alaw_encode = _encoder(ALAW_TO_PCM16)
"""float32 samples in [-1, 1] to A-law bytes (the nearest code)."""
