"""G.711 tables: every code decodes as FFmpeg decodes it; encoding picks the nearest code."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from streamdet.service.ingest.g711 import (
    ALAW_TO_PCM16,
    ULAW_TO_PCM16,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg (Debian package ffmpeg) is not installed")
@pytest.mark.parametrize(("fmt", "table"), [("mulaw", ULAW_TO_PCM16), ("alaw", ALAW_TO_PCM16)])
def test_every_code_decodes_as_ffmpeg_decodes_it(fmt: str, table: np.ndarray) -> None:
    out = subprocess.run(["ffmpeg", "-v", "error", "-f", fmt, "-ar", "8000", "-ac", "1", "-i", "-",
                          "-f", "s16le", "-"], input=bytes(range(256)), capture_output=True, check=True).stdout
    np.testing.assert_array_equal(np.frombuffer(out, dtype=np.int16), table)


def test_decoding_gives_float32_in_range() -> None:
    samples = ulaw_decode(bytes(range(256)))
    assert samples.dtype == np.float32 and samples.shape == (256,)
    assert -1.0 <= samples.min() < 0 < samples.max() < 1.0
    assert ulaw_decode(b"\xff")[0] == 0.0 and alaw_decode(b"\xd5")[0] == pytest.approx(8 / 32768)


@pytest.mark.parametrize(("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_encoding_picks_the_nearest_code(encode, decode) -> None:
    x = np.linspace(-1.0, 1.0, 4001, dtype=np.float32)
    levels = decode(bytes(range(256)))
    nearest = np.min(np.abs(x[:, None] - levels[None, :]), axis=1)
    # within one 16-bit step of the nearest level (samples are rounded to 16 bits first)
    np.testing.assert_allclose(np.abs(decode(encode(x)) - x), nearest, atol=1.01 / 32768)
    levels_again = decode(encode(levels))
    np.testing.assert_array_equal(levels_again, levels)  # every level encodes to itself
