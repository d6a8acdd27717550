"""Acceptance: real, independent RTP senders from Debian (ffmpeg, GStreamer) stream a fake clip as
PCMU and as Opus to the RTP ingest; the released ``vocoder_mellcnn`` raises an alert and the stream
ends cleanly (idle: neither sender says BYE without a session protocol), with every second of the
clip received. Needs ../shared, ffmpeg and gst-launch-1.0 (skipped without them).

Observed payload types: ffmpeg sends Opus as 97 (its SDP says ``a=rtpmap:97 opus/48000/2``),
GStreamer's ``rtpopuspay`` as 96; both are configured as dynamic types here, as an operator would.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from streamdet.service.ingest.rtp import free_udp_port

pytestmark = pytest.mark.reference


Command = Callable[[Path, int], list[str]]


def ffmpeg(codec: str) -> Command:
    args = ["-ac", "1", "-ar", "8000", "-acodec", "pcm_mulaw"] if codec == "pcmu" else ["-acodec", "libopus"]
    return lambda clip, port: ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-i", str(clip), *args,
                               "-f", "rtp", f"rtp://127.0.0.1:{port}"]


def gstreamer(codec: str) -> Command:
    encode = (["audio/x-raw,rate=8000,channels=1", "!", "mulawenc", "!", "rtppcmupay"] if codec == "pcmu"
              else ["opusenc", "!", "rtpopuspay"])
    return lambda clip, port: ["gst-launch-1.0", "-q", "filesrc", f"location={clip}", "!", "decodebin", "!",
                               "audioconvert", "!", "audioresample", "!", *encode, "!",
                               "udpsink", "host=127.0.0.1", f"port={port}", "sync=true"]


SENDERS = {"ffmpeg-pcmu": ("ffmpeg", ffmpeg("pcmu")), "ffmpeg-opus": ("ffmpeg", ffmpeg("opus")),
           "gstreamer-pcmu": ("gst-launch-1.0", gstreamer("pcmu")),
           "gstreamer-opus": ("gst-launch-1.0", gstreamer("opus"))}


@pytest.mark.parametrize("sender", list(SENDERS))
async def test_a_fake_clip_sent_by_a_real_rtp_client_raises_an_alert_and_ends(
        sender: str, shared_dir: Path, vocoder_scorer, start_service, kit) -> None:
    binary, command = SENDERS[sender]
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (Debian: ffmpeg, gstreamer1.0-tools and plugins)")
    port = free_udp_port()
    rtp = {"enabled": True, "ports": {str(port): sender}, "idle_timeout_s": 1.0,
           "payload_types": {"96": "opus/48000/2", "97": "opus/48000/2"}}
    service = await start_service(vocoder_scorer, ingests={"rtp": rtp})
    listener = service.listen()
    process = await asyncio.create_subprocess_exec(*command(shared_dir / kit.VOCODER_FAKE, port))
    assert await process.wait() == 0
    events = await kit.collect_until_end(listener, sender, timeout=120)
    kinds = [e.event for e in events]
    assert "raised" in kinds, [(e.event, e.p_spoof) for e in events if e.event == "score"]
    end = events[-1]
    assert (end.reason, end.alert) == ("idle", True)
    assert end.duration == pytest.approx(10.0, abs=0.1)  # the whole clip, nothing lost
    _, metrics = await kit.http_get(service, "/metrics")
    for result in ("lost", "late", "rejected"):
        assert kit.metric_value(metrics, "streamdet_rtp_packets_total", result=result) == 0, result
