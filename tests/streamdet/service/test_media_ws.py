"""Media-stream WebSocket ingest over loopback, replaying message sequences written from the public
descriptions of the protocols: Twilio Media Streams (``connected``, ``start``, ``media`` on both
tracks, ``mark``, ``dtmf``, ``stop``) and the binary audio fork (JSON ``start``, s16le frames).

The scorer is fake: loud windows (the inbound track here) score as spoof, quiet ones as bona fide.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from streamdet.service.ingest.g711 import ulaw_encode

CALL = "CA5e1a0b1c2d3e4f5a6b7c8d9e0f1a2b3c"
STREAM_SID = "MZ18ad3ab5a668481ce02b83e7395059f0"


def loud_is_spoof(window: np.ndarray) -> float:
    return 0.01 if float(np.sqrt(np.mean(window ** 2))) > 0.05 else 0.99


def twilio_call(inbound: np.ndarray, outbound: np.ndarray, chunk: int = 160) -> list[dict[str, Any]]:
    """A bidirectional Twilio stream: 20 ms of μ-law 8 kHz per media message, tracks interleaved."""
    seq = iter(range(1, 1_000_000))
    messages: list[dict[str, Any]] = [
        {"event": "connected", "protocol": "Call", "version": "1.0.0"},
        {"event": "start", "sequenceNumber": str(next(seq)), "streamSid": STREAM_SID,
         "start": {"accountSid": "AC00000000000000000000000000000000", "streamSid": STREAM_SID, "callSid": CALL,
                   "tracks": ["inbound", "outbound"], "customParameters": {"campaign": "test"},
                   "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}},
    ]
    for i, start in enumerate(range(0, max(len(inbound), len(outbound)), chunk)):
        for track, audio in (("inbound", inbound), ("outbound", outbound)):
            if start < len(audio):
                payload = base64.b64encode(ulaw_encode(audio[start:start + chunk])).decode()
                messages.append({"event": "media", "sequenceNumber": str(next(seq)), "streamSid": STREAM_SID,
                                 "media": {"track": track, "chunk": str(i + 1), "timestamp": str(i * 20),
                                           "payload": payload}})
        if i == 10:
            messages.append({"event": "mark", "sequenceNumber": str(next(seq)), "streamSid": STREAM_SID,
                             "mark": {"name": "greeting-done"}})
            messages.append({"event": "dtmf", "sequenceNumber": str(next(seq)), "streamSid": STREAM_SID,
                             "dtmf": {"track": "inbound_track", "digit": "1"}})
    messages.append({"event": "stop", "sequenceNumber": str(next(seq)), "streamSid": STREAM_SID,
                     "stop": {"accountSid": "AC00000000000000000000000000000000", "callSid": CALL}})
    return messages


async def replay(url: str, messages: list[Any], headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Send every message (dicts as JSON text, bytes as binary, str as raw text), then read what
    the service sends back until it closes the socket."""
    received: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
        for message in messages:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            elif isinstance(message, str):
                await ws.send_str(message)
            else:
                await ws.send_json(message)
        async for reply in ws:
            if reply.type == aiohttp.WSMsgType.TEXT:
                received.append(json.loads(reply.data))
    return received


def tone8k(seconds: float, amplitude: float, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


async def test_a_twilio_call_scores_both_tracks_and_sends_the_alert_back(start_service, kit) -> None:
    service = await start_service(kit.FakeScorer(loud_is_spoof), ingests={"media_ws": {"enabled": True}})
    listener = service.listen(f"score.{CALL}/")
    url = f"ws://127.0.0.1:{service.http_port}/media-stream"
    replies = await replay(url, twilio_call(tone8k(6.0, 0.5), tone8k(6.0, 0.01)))

    ends: dict[str, Any] = {}
    while len(ends) < 2:
        event = await listener.get(30)
        if event.event == "end":
            ends[event.stream_id] = event
    assert ends[f"{CALL}/inbound"].alert and ends[f"{CALL}/inbound"].reason == "end"
    assert not ends[f"{CALL}/outbound"].alert and ends[f"{CALL}/outbound"].reason == "end"

    alerts = [r for r in replies if r["event"] == "streamdet.alert"]
    assert alerts and {a["stream_id"] for a in alerts} == {f"{CALL}/inbound"}
    assert [a["streamdet"]["event"] for a in alerts] == ["raised", "ended"]
    assert all(a["streamSid"] == STREAM_SID and a["track"] == "inbound" for a in alerts)
    sent_ends = {r["stream_id"]: r["streamdet"] for r in replies if r["event"] == "streamdet.end"}
    assert sent_ends.keys() == ends.keys() and sent_ends[f"{CALL}/inbound"]["windows"] == ends[f"{CALL}/inbound"].windows

    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_ingest_rejects_total", reason="unknown_event") == 0
    assert kit.metric_value(metrics, "streamdet_media_ws_connections") == 0


async def test_the_binary_fork_splits_two_channels_into_two_tracks(start_service, kit) -> None:
    service = await start_service(kit.FakeScorer(loud_is_spoof), ingests={"media_ws": {"enabled": True}})
    listener = service.listen("score.fork-1/")
    stereo = np.stack([tone8k(5.0, 0.01, 16000), tone8k(5.0, 0.5, 16000)], axis=1)  # inbound quiet, outbound loud
    pcm = (stereo * 32767).astype("<i2")
    frames = [pcm[i:i + 320].tobytes() for i in range(0, len(pcm), 320)]  # 20 ms at 16 kHz
    start = {"event": "start", "call_id": "fork-1", "sample_rate": 16000, "channels": 2}
    replies = await replay(f"ws://127.0.0.1:{service.http_port}/audio-fork", [start, *frames, {"event": "stop"}])

    ends = {}
    while len(ends) < 2:
        event = await listener.get(30)
        if event.event == "end":
            ends[event.stream_id] = event
    assert ends["fork-1/outbound"].alert and not ends["fork-1/inbound"].alert
    assert ends["fork-1/inbound"].duration == pytest.approx(5.0, abs=0.01)
    assert {r["stream_id"] for r in replies if r["event"] == "streamdet.alert"} == {"fork-1/outbound"}


async def test_a_closed_or_silent_socket_ends_its_streams(start_service, kit) -> None:
    service = await start_service(ingests={"media_ws": {"enabled": True, "idle_timeout_s": 0.5}})
    listener = service.listen("score.")
    base = f"ws://127.0.0.1:{service.http_port}"
    start = {"event": "start", "call_id": "closer", "sample_rate": 8000, "channels": 1}
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{base}/audio-fork") as ws:
            await ws.send_json(start)
            await ws.send_bytes(np.zeros(8000, "<i2").tobytes())
        async with http.ws_connect(f"{base}/audio-fork") as ws:  # stays silent: the service closes it
            await ws.send_json({**start, "call_id": "silent"})
            await ws.send_bytes(np.zeros(8000, "<i2").tobytes())
            async for _ in ws:
                pass
            assert ws.close_code == 1000
    reasons = {}
    while len(reasons) < 2:
        event = await listener.get(30)
        if event.event == "end":
            reasons[event.stream_id] = event.reason
    assert reasons == {"closer/inbound": "closed", "silent/inbound": "idle_timeout"}


async def test_bad_messages_are_refused_and_counted_while_other_calls_keep_scoring(start_service, kit) -> None:
    service = await start_service(kit.FakeScorer(loud_is_spoof), ingests={"media_ws": {"enabled": True}})
    base = f"ws://127.0.0.1:{service.http_port}"
    good_listener = service.listen(f"score.{CALL}/inbound")
    bad_media = {"event": "media", "streamSid": STREAM_SID, "media": {"track": "inbound", "payload": "AAAA"}}
    bad_twilio = [
        bad_media,                                                         # media_before_start
        "{not json",                                                       # invalid_json
        json.dumps(["an", "array"]),                                       # invalid_json
        {"event": "start", "start": {"callSid": CALL + "-bad", "mediaFormat": {
            "encoding": "audio/l16", "sampleRate": 16000, "channels": 1}}},  # unsupported_format
        {"event": "start", "start": {"callSid": "bad call id!"}},          # bad_start
        {"event": "start", "start": {"callSid": "second"}},
        {"event": "start", "start": {"callSid": "third"}},                 # duplicate_start
        {**bad_media, "media": {"track": "inbound", "payload": "!!not base64!!"}},  # invalid_base64
        {**bad_media, "media": {"track": "sideways", "payload": "AAAA"}},  # unknown_track
        {"event": "transcript"},                                           # unknown_event
        b"\x00\x01",                                                       # unexpected_binary
        {"event": "stop"},
    ]
    bad_fork = [b"\x00\x00", {"event": "start", "call_id": "odd", "sample_rate": 8000, "channels": 2},
                b"\x00\x00\x00", {"event": "media"}, {"event": "start", "call_id": "x", "sample_rate": 100},
                {"event": "stop"}]
    good = twilio_call(tone8k(5.0, 0.5), tone8k(0.2, 0.01))
    await asyncio.gather(replay(f"{base}/media-stream", good), replay(f"{base}/media-stream", bad_twilio),
                         replay(f"{base}/audio-fork", bad_fork))
    events = await kit.collect_until_end(good_listener, f"{CALL}/inbound")
    assert events[-1].alert and events[-1].windows >= 2

    _, metrics = await kit.http_get(service, "/metrics")
    counts = {reason: kit.metric_value(metrics, "streamdet_ingest_rejects_total", reason=reason)
              for reason in ("media_before_start", "invalid_json", "unsupported_format", "bad_start",
                             "duplicate_start", "invalid_base64", "unknown_track", "unknown_event",
                             "unexpected_binary", "bad_frame_length")}
    assert counts == {"media_before_start": 2, "invalid_json": 2, "unsupported_format": 2, "bad_start": 1,
                      "duplicate_start": 1, "invalid_base64": 1, "unknown_track": 1, "unknown_event": 2,
                      "unexpected_binary": 1, "bad_frame_length": 1}


async def test_a_token_is_required_when_set(start_service, kit) -> None:
    service = await start_service(kit.FakeScorer(loud_is_spoof),
                                  ingests={"media_ws": {"enabled": True, "token": "s3cret"}})
    url = f"ws://127.0.0.1:{service.http_port}/media-stream"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers={"Authorization": "Bearer wrong"})
        assert refused.value.status == 401
    listener = service.listen("score.")
    call = twilio_call(tone8k(1.0, 0.5), tone8k(0.0, 0.0))
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:  # no token anywhere
        await ws.send_json(call[0])
        await ws.send_json(call[1])
        async for _ in ws:
            pass
        assert ws.close_code == 1008  # the start is refused and the socket closed
    call[1]["start"]["customParameters"]["token"] = "s3cret"  # Twilio carries it as a custom parameter
    await replay(url, call)
    event = await listener.get(30)
    assert event.stream_id == f"{CALL}/inbound"
    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_ingest_rejects_total", reason="unauthorized") == 2
    status, body = await kit.http_get(service, "/info")
    assert {"name": "media_ws", "protocol": "media-ws", "endpoint": "/media-stream /audio-fork",
            "auth": "token"} in json.loads(body)["ingests"]


def mulaw_of(path: Path) -> bytes:
    """A file as G.711 μ-law at 8 kHz, coded by FFmpeg (not by the service's tables)."""
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-ar", "8000", "-ac", "1", "-f", "mulaw", "-"],
                          capture_output=True, check=True).stdout


@pytest.mark.reference
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg (Debian package ffmpeg) is not installed")
async def test_a_fake_clip_on_the_inbound_track_raises_an_alert_sent_back_on_the_socket(start_service, shared_dir,
                                                                                      kit) -> None:
    """The shipped CM at 0.98, its earlier calibrated threshold (this tests the ingest path, not the
    CM's operating point): every window of the fake clip is spoof evidence under μ-law (p_spoof >= 0.99),
    none of the real one's (0.95 and 0.75)."""
    from streamdet.pretrained import default_cm_dir
    from streamdet.scoring.torch_scorer import TorchScorer

    fake = mulaw_of(shared_dir / "alm-add/audio/AudioLM/speech_4093adea-d36c-42b8-a165-14cc5fceb461_fake.wav")
    real = mulaw_of(shared_dir / "alm-add/audio/AudioLM/speech_23f51675-43da-4bc4-8f31-db866152b080_real.wav")
    service = await start_service(TorchScorer(str(default_cm_dir()), device="cpu"),
                                  ingests={"media_ws": {"enabled": True}}, alerts={"spoof_threshold": 0.98})
    listener = service.listen(f"score.{CALL}/")
    # The same sequence as twilio_call, with FFmpeg's μ-law bytes as the payloads.
    call = twilio_call(np.zeros(len(fake), np.float32), np.zeros(len(real), np.float32))
    payloads = {"inbound": iter(range(0, len(fake), 160)), "outbound": iter(range(0, len(real), 160))}
    for message in call:
        if message["event"] == "media":
            track = message["media"]["track"]
            coded = fake if track == "inbound" else real
            start = next(payloads[track])
            message["media"]["payload"] = base64.b64encode(coded[start:start + 160]).decode()
    replies = await replay(f"ws://127.0.0.1:{service.http_port}/media-stream", call)

    ends = {}
    while len(ends) < 2:
        event = await listener.get(60)
        if event.event == "end":
            ends[event.stream_id] = event
    assert ends[f"{CALL}/inbound"].alert and not ends[f"{CALL}/outbound"].alert
    assert all(e.reason == "end" and e.dropped == 0 for e in ends.values())
    alerts = [(r["stream_id"], r["streamdet"]["event"]) for r in replies if r["event"] == "streamdet.alert"]
    assert alerts == [(f"{CALL}/inbound", "raised"), (f"{CALL}/inbound", "ended")]
