"""Acceptance, WHIP end to end over loopback with a released Mel-LCNN (needs ../shared):

- a fake ALM-ADD clip published in real time with ``streamdet whip-send`` raises an alert that
  reaches a ZeroMQ subscriber and the monitoring page's event stream (``GET /events``);
- a real clip published the same way raises none (k = n = 1: any spoof-looking window would).

The CM is ``vocoder_mellcnn`` (Mel-LCNN trained on ASVspoof2019 LA), not the ZeroMQ tests'
``codec_mellcnn``: WebRTC carries Opus, and the codec-trained CM (trained to call codec-resynthesised
speech fake) scores Opus-coded bona fide speech as spoof. Of the 47 real ALM-ADD clips only the
HAM-TTS ground truths are bona fide for it even offline, and after an Opus round trip (96 kbit/s as
aiortc sends, 32 kbit/s as a browser does) none of them stays above 0.5 in every window. With
``vocoder_mellcnn`` the two clips below keep their verdict through Opus at both rates, in every
window the service scores (hop windows and the tail window):

    FAKE  every window p_bonafide < 2e-7 offline, < 6e-6 after Opus
    REAL  4.0 s, one (tiled) window: p_bonafide 0.990 offline, 0.997 / 0.991 after Opus 96 / 32 kbit/s

(Most real ALM-ADD clips are spoof to this CM too, or only in their tail window: a clip must be
checked window by window, as ``StreamSession`` cuts it, not by its first 4 s.)
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from streamdet.client import Subscriber

pytestmark = pytest.mark.reference

REPO = Path(__file__).resolve().parents[3]
FAKE = "alm-add/audio/AudioLM/speech_497b5be1-e5f7-49dd-b244-67df3817d25b_fake.wav"  # 10.0 s
REAL = "alm-add/audio/AudioLM/speech_4093adea-d36c-42b8-a165-14cc5fceb461_real.wav"  # 4.0 s
LOOPBACK = {"whip": {"ice_addresses": ["127.0.0.1"]}}


@pytest.fixture(scope="module")
def vocoder_scorer(released_checkpoint, tmp_path_factory):
    from offline.checkpoint import import_checkpoint
    from streamdet.scoring.torch_scorer import TorchScorer

    directory = tmp_path_factory.mktemp("vocoder_mellcnn")
    import_checkpoint(released_checkpoint("vocoder_mellcnn"), directory)
    return TorchScorer(directory, device="cpu")


async def sse_events(url: str, ready: asyncio.Event) -> AsyncIterator[dict]:
    """The JSON of each ``data:`` line of a server-sent-event stream; ``ready`` set once it is open."""
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200 and response.content_type == "text/event-stream"
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                event = json.loads(line[len("data: "):])
                if event["event"] == "hello":
                    ready.set()
                yield event


async def first_alert_on_page(url: str, stream_id: str, ready: asyncio.Event) -> dict:
    async for event in sse_events(url, ready):
        if event["event"] == "raised" and event["stream_id"] == stream_id:
            return event
    raise AssertionError("the event stream ended without the alert")


async def whip_send(service, clip: Path, stream_id: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamdet", "whip-send", str(clip), "--url", f"http://127.0.0.1:{service.http_port}",
        "--stream-id", stream_id, "--ice-addresses", "127.0.0.1", env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)


async def test_fake_clip_published_over_whip_raises_an_alert_everywhere(shared_dir, vocoder_scorer,
                                                                         start_service, kit) -> None:
    service = await start_service(vocoder_scorer, **LOOPBACK)
    listener = service.listen("score.whip-fake")
    page_ready = asyncio.Event()
    page = asyncio.create_task(first_alert_on_page(
        f"http://127.0.0.1:{service.http_port}/events?prefix=alert.", "whip-fake", page_ready))
    async with Subscriber(service.events_endpoint, ["alert."]) as subscriber:
        await subscriber.wait_connected()
        await asyncio.wait_for(page_ready.wait(), 10)
        send = await whip_send(service, shared_dir / FAKE, "whip-fake")
        alert = await subscriber.recv(timeout=60)
        stdout, stderr = await asyncio.wait_for(send.communicate(), 60)
    assert send.returncode == 0, stderr.decode()
    assert json.loads(stdout)["codec"] == "opus"
    assert (alert.event, alert.stream_id, alert.model_id) == ("raised", "whip-fake", vocoder_scorer.model_id)
    # 2 of 3 (the default): the second window raises.
    assert alert.window == 1 and alert.spoof and alert.p_spoof >= alert.spoof_threshold == 0.5
    on_page = await asyncio.wait_for(page, 10)
    assert (on_page["topic"], on_page["window"], on_page["p_spoof"]) == ("alert.whip-fake", 1, alert.p_spoof)

    events = await kit.collect_until_end(listener, "whip-fake", timeout=30)
    scores = [e for e in events if e.event == "score"]
    assert events[-1].reason == "end" and abs(events[-1].duration - 10.0) < 0.1
    assert len(scores) == 7 and all(e.p_bonafide < 1e-3 for e in scores)  # Opus moved them, a little


async def test_real_clip_published_over_whip_raises_nothing(shared_dir, vocoder_scorer, start_service,
                                                           kit) -> None:
    service = await start_service(vocoder_scorer, alerts={"k": 1, "n": 1}, **LOOPBACK)
    listener = service.listen()
    send = await whip_send(service, shared_dir / REAL, "whip-real")
    _, stderr = await asyncio.wait_for(send.communicate(), 60)
    assert send.returncode == 0, stderr.decode()
    events = await kit.collect_until_end(listener, "whip-real", timeout=30)
    assert [e.event for e in events] == ["score", "end"]  # shorter than a window: one, tiled
    assert all(e.p_spoof < 0.5 and not e.alert for e in events[:-1])
    assert events[-1].reason == "end" and not events[-1].alert
