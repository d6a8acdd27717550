"""RTP payload decoders: formats parsed from settings, G.711 and L16 exact, G.722 and Opus through
PyAV matching what ffmpeg encoded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from streamdet.errors import ConfigError, ProtocolError
from streamdet.g711 import alaw_encode, ulaw_encode
from streamdet.service.ingest.rtp_codecs import STATIC_PAYLOAD_TYPES, make_decoder, parse_format


def test_formats_are_parsed_like_rtpmap() -> None:
    assert str(parse_format("opus/48000/2")) == "opus/48000/2"
    assert str(parse_format("PCMU/8000")) == "pcmu/8000/1"
    assert parse_format("G722/8000").sample_rate == 16_000  # an 8 kHz clock, 16 kHz audio
    assert not parse_format("telephone-event/8000").carries_audio
    for bad in ("speex/8000", "opus/44100/2", "pcmu", "l16/x", "opus/48000/3"):
        with pytest.raises(ConfigError):
            parse_format(bad)


def test_g711_decodes_what_g711_encoded() -> None:
    pcm = (np.sin(np.arange(160) / 5) * 20_000).astype(np.int16)
    for pt, encode in ((0, ulaw_encode), (8, alaw_encode)):
        decoded = make_decoder(STATIC_PAYLOAD_TYPES[pt]).decode(encode(pcm).tobytes())
        assert decoded.shape == (160, 1) and decoded.dtype == np.float32
        np.testing.assert_allclose(decoded[:, 0], pcm / 32768.0, atol=0.02)  # G.711's quantisation


def test_l16_is_big_endian_interleaved_and_checks_its_size() -> None:
    decoder = make_decoder(STATIC_PAYLOAD_TYPES[10])  # L16 stereo
    decoded = decoder.decode(np.array([[1000, -1000], [2000, -2000]], dtype=">i2").tobytes())
    np.testing.assert_array_equal(decoded * 32768, [[1000, -1000], [2000, -2000]])
    with pytest.raises(ProtocolError) as caught:
        decoder.decode(b"\x00\x01\x02")
    assert caught.value.reason == "rtp_payload_size"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_g722_and_opus_decode_through_pyav(tmp_path: Path) -> None:
    import av

    g722 = tmp_path / "tone.g722"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=f=440:d=0.2", "-ar", "16000",
                    "-c:a", "g722", "-f", "g722", str(g722)], check=True)
    decoded = make_decoder(STATIC_PAYLOAD_TYPES[9]).decode(g722.read_bytes()[:160])
    assert decoded.shape == (320, 1)  # 20 ms of 16 kHz audio from 160 bytes

    ogg = tmp_path / "tone.ogg"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=f=440:d=0.2", "-ar", "48000",
                    "-c:a", "libopus", str(ogg)], check=True)
    with av.open(str(ogg)) as container:
        packets = [bytes(p) for p in container.demux(audio=0) if p.size]
    decoder = make_decoder(parse_format("opus/48000/2"))
    decoded = np.concatenate([decoder.decode(p) for p in packets])
    assert decoded.shape[1] == 2 and decoded.shape[0] >= 0.18 * 48_000
    assert np.abs(decoded).max() > 0.1  # a tone came out, not silence
    assert decoder.decode(b"").shape == (0, 2)  # nothing, and the decoder is not flushed by it
    with pytest.raises(ProtocolError) as caught:
        decoder.decode(b"\xff")  # a code-3 TOC byte without its frame count
    assert caught.value.reason == "rtp_decode"
    assert len(decoder.decode(packets[3])) == 960  # still decoding
