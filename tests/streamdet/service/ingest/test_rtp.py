"""The RTP ingest in a real service on loopback, fed by a raw UDP sender (so that packets can be
broken, reordered, duplicated and lost on purpose): scoring, ending (BYE, idle, DELETE), sessions
over HTTP, and bad input counted while other streams keep scoring. Real senders (ffmpeg,
GStreamer) are in ``test_rtp_clients.py``."""

from __future__ import annotations

import asyncio
import socket
import struct

import aiohttp
import numpy as np
import pytest

from streamdet.errors import ConfigError
from streamdet.g711 import ulaw_encode
from streamdet.service.ingest.rtp import free_udp_port
from streamdet.service.ingest.rtp_packet import build_rtcp_bye, build_rtp
from streamdet.service.ingest.rtp_settings import RtpSettings

PACKET = 160  # 20 ms of 8 kHz μ-law


def ulaw_packets(seconds: float, ssrc: int, first_seq: int = 0, first_ts: int = 0) -> list[bytes]:
    t = np.arange(int(seconds * 8_000)) / 8_000
    codes = ulaw_encode((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)).tobytes()
    return [build_rtp(0, first_seq + i, first_ts + i * PACKET, ssrc, codes[s:s + PACKET])
            for i, s in enumerate(range(0, len(codes), PACKET))]


class Udp:
    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def send(self, packets: list[bytes], port: int | None = None) -> None:
        for i, packet in enumerate(packets):
            self.sock.sendto(packet, ("127.0.0.1", port or self.port))
            if i % 50 == 49:
                await asyncio.sleep(0.005)  # let the service read: loopback buffers are finite

    def close(self) -> None:
        self.sock.close()


async def frames_accepted(service, kit, count: int) -> None:
    """Until the RTP ingest has pushed ``count`` packets' audio."""
    while True:
        _, metrics = await kit.http_get(service, "/metrics")
        if kit.metric_value(metrics, "streamdet_ingest_frames_total", adapter="rtp") >= count:
            return
        await asyncio.sleep(0.02)


async def rtp_service(start_service, kit, ports: dict[int, str], **rtp):
    settings = {"enabled": True, "ports": {str(p): n for p, n in ports.items()}, **rtp}
    return await start_service(kit.FakeScorer(p_bonafide=0.1), ingests={"rtp": settings})


async def test_a_stream_with_wrap_reordering_and_duplicates_is_scored_whole_and_ended_by_bye(
        start_service, kit) -> None:
    port = free_udp_port()
    service = await rtp_service(start_service, kit, {port: "call-a"})
    listener = service.listen()
    packets = ulaw_packets(5.0, ssrc=0xCAFE, first_seq=65_500, first_ts=2**32 - 8_000)  # both wrap
    packets[10], packets[11] = packets[11], packets[10]
    packets.insert(20, packets[19])
    udp = Udp(port)
    try:
        await udp.send(packets)
        await asyncio.wait_for(frames_accepted(service, kit, 250), 30)
        await udp.send([build_rtcp_bye(0xCAFE)], port + 1)  # RTCP on port + 1
        events = await kit.collect_until_end(listener, "call-a")
    finally:
        udp.close()
    end = events[-1]
    assert (end.reason, end.duration) == ("bye", pytest.approx(5.0, abs=0.01))  # every packet, in order
    assert [e.event for e in events].count("score") == end.windows >= 2
    _, metrics = await kit.http_get(service, "/metrics")
    counts = {r: kit.metric_value(metrics, "streamdet_rtp_packets_total", result=r)
              for r in ("accepted", "reordered", "duplicate", "lost")}
    assert counts == {"accepted": 249, "reordered": 1, "duplicate": 1, "lost": 0}
    assert kit.metric_value(metrics, "streamdet_streams_ended_total", reason="bye") == 1


async def test_lost_packets_become_silence_of_their_length(start_service, kit) -> None:
    port = free_udp_port()
    service = await rtp_service(start_service, kit, {port: "call-b"}, jitter_ms=0)
    listener = service.listen()
    packets = ulaw_packets(3.0, ssrc=7)
    del packets[50:60]  # 200 ms lost
    udp = Udp(port)
    try:
        await udp.send(packets)
        await asyncio.wait_for(frames_accepted(service, kit, 140), 30)
        await udp.send([build_rtcp_bye(7)])  # RTCP multiplexed on the RTP port
        events = await kit.collect_until_end(listener, "call-b")
    finally:
        udp.close()
    assert events[-1].duration == pytest.approx(3.0, abs=0.01)  # media time kept
    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_rtp_concealed_seconds_total") == pytest.approx(0.2)
    assert kit.metric_value(metrics, "streamdet_rtp_packets_total", result="lost") == 10


async def test_bad_packets_are_rejected_and_counted_while_another_stream_keeps_scoring(start_service, kit) -> None:
    good, bad = free_udp_port(), free_udp_port()
    service = await rtp_service(start_service, kit, {good: "good", bad: "bad"}, idle_timeout_s=0.5)
    listener = service.listen()
    header = struct.pack("!BBHII", 0x80, 0, 1, 0, 5)
    garbage = [
        b"\x80\x00",  # truncated
        struct.pack("!BBHII", 0x40, 0, 1, 0, 5) + b"x" * 160,  # version 1
        struct.pack("!BBHII", 0xA0, 0, 1, 0, 5) + b"x\x40",  # padding beyond the packet
        struct.pack("!BBHII", 0x90, 0, 1, 0, 5) + struct.pack("!HH", 0, 50),  # extension beyond it
        build_rtp(96, 1, 0, 5, b"x" * 160),  # payload type not configured
        struct.pack("!BBHI", 0x81, 203, 7, 5),  # RTCP BYE whose length runs past the packet
    ]
    udp = Udp(good)
    try:
        packets = ulaw_packets(3.0, ssrc=1)
        for i in range(0, len(packets), 25):
            await udp.send(garbage, bad)
            await udp.send(packets[i:i + 25])
        events = await kit.collect_until_end(listener, "good")
    finally:
        udp.close()
    assert events[-1].reason == "idle" and events[-1].duration == pytest.approx(3.0, abs=0.01)
    assert header  # (the valid header the garbage was cut from)
    _, metrics = await kit.http_get(service, "/metrics")
    rounds = len(range(0, 150, 25))
    for reason in ("rtp_version", "rtp_padding", "rtp_extension", "rtp_payload_type", "rtcp_truncated"):
        assert kit.metric_value(metrics, "streamdet_ingest_rejects_total", reason=reason) == rounds, reason
    assert kit.metric_value(metrics, "streamdet_ingest_rejects_total", reason="rtp_truncated") == rounds
    assert kit.metric_value(metrics, "streamdet_rtp_packets_total", result="rejected") == 6 * rounds
    assert service.registry.get("bad") is None  # nothing of it reached the registry


async def test_sessions_open_a_port_over_http_and_delete_ends_the_stream(start_service, kit) -> None:
    service = await start_service(kit.FakeScorer(), ingests={"rtp": {"enabled": True, "token": "s3cret"}})
    listener = service.listen()
    base = f"http://127.0.0.1:{service.http_port}/rtp"
    auth = {"Authorization": "Bearer s3cret"}
    async with aiohttp.ClientSession() as http:
        async with http.post(base, json={"stream_id": "call-c"}) as response:
            assert response.status == 401
        async with http.post(base, json={"stream_id": "call c"}, headers=auth) as response:
            assert response.status == 400 and (await response.json())["error"] == "bad_stream_id"
        async with http.post(base, json={"stream_id": "call-c", "payload_types": {"96": "speex/8000"}},
                             headers=auth) as response:
            assert response.status == 400 and (await response.json())["error"] == "bad_payload_type"
        async with http.post(base, json={"stream_id": "call-c", "payload_types": [96]}, headers=auth) as response:
            assert response.status == 400 and (await response.json())["error"] == "bad_payload_type"
        async with http.post(base, data=b"{not json", headers=auth) as response:
            assert response.status == 400 and (await response.json())["error"] == "bad_json"
        async with http.post(base, json={"stream_id": "call-c", "payload_types": {"111": "opus/48000/2"}},
                             headers=auth) as response:
            assert response.status == 201
            session = await response.json()
            assert response.headers["Location"] == f"/rtp/{session['session']}"
        assert (session["stream_id"], session["host"]) == ("call-c", "127.0.0.1")
        async with http.post(base, json={"stream_id": "call-c"}, headers=auth) as response:
            assert response.status == 409
        udp = Udp(session["port"])
        try:
            await udp.send(ulaw_packets(2.0, ssrc=3))
            await asyncio.wait_for(frames_accepted(service, kit, 100), 30)
        finally:
            udp.close()
        async with http.delete(f"{base}/{session['session']}", headers=auth) as response:
            assert response.status == 200
        async with http.delete(f"{base}/{session['session']}", headers=auth) as response:
            assert response.status == 404
    events = await kit.collect_until_end(listener, "call-c")
    assert (events[-1].reason, events[-1].duration) == ("end", pytest.approx(2.0, abs=0.01))
    assert session["port"] not in service.ingests["rtp"].ports


async def test_a_second_source_on_a_port_is_its_own_stream(start_service, kit) -> None:
    port = free_udp_port()
    service = await rtp_service(start_service, kit, {port: "call-d"}, idle_timeout_s=0.3)
    listener = service.listen()
    udp = Udp(port)
    try:
        await udp.send(ulaw_packets(1.5, ssrc=1) + ulaw_packets(1.0, ssrc=0xAB, first_seq=9))
        ends = {}
        while len(ends) < 2:
            event = await listener.get(30)
            if event.event == "end":
                ends[event.stream_id] = event
    finally:
        udp.close()
    assert ends["call-d"].duration == pytest.approx(1.5, abs=0.01)
    assert ends["call-d.000000ab"].duration == pytest.approx(1.0, abs=0.01)


def test_settings_refuse_static_types_as_dynamic_and_unknown_codecs(kit) -> None:
    for bad in ({"payload_types": {95: "opus/48000/2"}}, {"payload_types": {96: "speex/8000"}},
                {"ports": {5004: "a b"}}, {"ports": {5004: "a", 5006: "a"}}):
        with pytest.raises(ValueError):
            RtpSettings.model_validate(bad)
    from streamdet.service.ingest import plugins
    from streamdet.service.settings import load_settings

    settings = load_settings(None, kit.loopback_overrides(ingests={"rtp": {"payload_types": {"95": "pcmu/8000"}}}))
    with pytest.raises(ConfigError):
        plugins.build_ingests(settings)


async def test_split_channels_make_an_l16_stereo_call_two_streams(start_service, kit) -> None:
    port = free_udp_port()
    service = await start_service(kit.FakeScorer(lambda w: 0.05 if np.abs(w).max() > 0.5 else 0.95),
                                  ingests={"rtp": {"enabled": True, "ports": {str(port): "call-e"},
                                                   "split_channels": True, "idle_timeout_s": 0.3}})
    listener = service.listen()
    t = np.arange(44_100 * 5) / 44_100
    stereo = np.stack([0.9 * np.sin(2 * np.pi * 300 * t), 0.1 * np.sin(2 * np.pi * 500 * t)], axis=1)
    pcm = (stereo * 32767).astype(">i2")
    step = 441  # 10 ms
    packets = [build_rtp(10, i, i * step, 9, pcm[s:s + step].tobytes()) for i, s in enumerate(range(0, len(pcm), step))]
    udp = Udp(port)
    try:
        await udp.send(packets)
        events: dict[str, list] = {}
        ended: set[str] = set()
        while len(ended) < 2:
            event = await listener.get(30)
            events.setdefault(event.stream_id, []).append(event)
            if event.event == "end":
                ended.add(event.stream_id)
    finally:
        udp.close()
    assert set(events) == {"call-e/0", "call-e/1"}
    assert "raised" in [e.event for e in events["call-e/0"]]
    assert "raised" not in [e.event for e in events["call-e/1"]]
    assert [e.duration for e in events["call-e/1"] if e.event == "end"] == [pytest.approx(5.0, abs=0.01)]


async def test_session_ports_come_from_the_configured_range(start_service, kit) -> None:
    low = free_udp_port() & ~1
    service = await start_service(kit.FakeScorer(), ingests={"rtp": {"enabled": True,
                                                                      "session_ports": [low, low + 5]}})
    ports = []
    async with aiohttp.ClientSession() as http:
        for i in range(4):
            async with http.post(f"http://127.0.0.1:{service.http_port}/rtp", json={"stream_id": f"s{i}"}) as r:
                ports.append((r.status, (await r.json()).get("port")))
    opened = [port for status, port in ports if status == 201]
    assert opened and all(port % 2 == 0 and low <= port <= low + 5 for port in opened)
    assert ports[-1][0] == 503  # three even ports in the range, at most
