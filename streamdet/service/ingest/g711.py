"""G.711 for ingests that receive bytes and want float32: 256-entry lookup tables built from the
codec in ``streamdet.g711`` (the one definition of the reconstruction levels).

Decoding is a table lookup; encoding (for test and load clients) searches the sorted table, which
gives the nearest code for every 16-bit sample (the reference encoder in ``streamdet.g711``
truncates instead, as G.711 specifies).
"""

from __future__ import annotations

import numpy as np

from streamdet import g711

_CODES = np.arange(256, dtype=np.uint8)
ULAW_TO_PCM16 = g711.ulaw_decode(_CODES)
ALAW_TO_PCM16 = g711.alaw_decode(_CODES)
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
