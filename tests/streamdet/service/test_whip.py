"""WHIP ingest (RFC 9725) with a fake scorer: the protocol, each refusal, and how sessions end.

Everything runs over loopback: the service and the aiortc publishers offer 127.0.0.1 only and use
no STUN server. Files are published faster than real time (``speed``) where pacing does not matter.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile as sf
from aiortc import RTCPeerConnection

from streamdet.client.whip_sender import (
    FileAudioTrack,
    WhipClientError,
    WhipPublisher,
    endpoint_url,
    publish_array_async,
)
from streamdet.service.ingest.whip_ice import rtc_configuration

REPO = Path(__file__).resolve().parents[3]
LOOPBACK_ICE = ["127.0.0.1"]
WHIP = {"ice_addresses": LOOPBACK_ICE}


async def start(start_service, **sections):
    sections["whip"] = {**WHIP, **sections.get("whip", {})}
    return await start_service(**sections)


def base_url(service) -> str:
    return f"http://127.0.0.1:{service.http_port}"


async def request(service, method: str, path: str, body: bytes | str = b"", *,
                  content_type: str | None = "application/sdp", token: str | None = None):
    """(status, headers, text) of one HTTP request to the service."""
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http, http.request(
            method, base_url(service) + path, data=body, headers=headers) as response:
        return response.status, response.headers, await response.text()


async def make_offer(kind: str = "audio") -> str:
    """A real aiortc offer sending one ``kind`` track (no track attached: it is never answered)."""
    pc = RTCPeerConnection(rtc_configuration())
    pc.addTransceiver(kind, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    await pc.close()
    return offer


def refused(status: int, text: str, reason: str) -> dict:
    problem = json.loads(text)
    assert (problem["status"], problem["title"]) == (status, reason), problem
    assert problem["detail"]
    return problem


async def rejects(service, kit, reason: str) -> float:
    _, metrics = await kit.http_get(service, "/metrics")
    return kit.metric_value(metrics, "streamdet_whip_rejects_total", reason=reason)


class LivePublisher:
    """A tone published until ``finish()`` (then DELETE), for tests that need a stream running."""

    def __init__(self, service, kit, stream_id: str, seconds: float = 30.0, speed: float = 4.0, **options) -> None:
        self.stream_id = stream_id
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(publish_array_async(
            kit.tone(seconds), 16_000, base_url(service), stream_id=stream_id, ice_addresses=LOOPBACK_ICE,
            speed=speed, stop=self.stop, **options))

    async def finish(self):
        self.stop.set()
        return await asyncio.wait_for(self.task, 30)


async def wait_until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


# --- the protocol ---------------------------------------------------------------------------------


async def test_publish_scores_windows_and_delete_ends_the_stream(start_service, kit) -> None:
    service = await start(start_service)
    listener = service.listen("score.tone-1")
    result = await publish_array_async(kit.tone(5.0), 16_000, base_url(service), stream_id="tone-1",
                                       speed=4.0, ice_addresses=LOOPBACK_ICE)
    assert re.fullmatch(rf"{base_url(service)}/whip/tone-1/[A-Za-z0-9_-]{{20,}}", result.resource)
    assert result.codec == "opus"
    events = await kit.collect_until_end(listener, "tone-1", timeout=20)
    assert [e.event for e in events] == ["score", "score", "end"]
    end = events[-1]
    assert end.reason == "end" and end.dropped == 0
    assert abs(end.duration - 5.0) < 0.05  # the tail padding pushes the whole file through
    assert service.whip.sessions == {} and service.registry.get("tone-1") is None

    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_whip_sessions_total") == 1
    assert kit.metric_value(metrics, "streamdet_whip_sessions_closed_total", reason="end") == 1
    assert kit.metric_value(metrics, "streamdet_whip_peers") == 0
    assert kit.metric_value(metrics, "streamdet_ingest_frames_total", adapter="whip") >= 240  # 20 ms each


async def test_answer_is_sdp_with_location_and_every_candidate(start_service) -> None:
    service = await start(start_service)
    status, headers, answer = await request(service, "POST", "/whip/answer-1", await make_offer())
    assert status == 201
    assert headers["Content-Type"].startswith("application/sdp")
    assert re.fullmatch(r"/whip/answer-1/[A-Za-z0-9_-]+", headers["Location"])
    assert answer.startswith("v=0") and "a=recvonly" in answer
    # Non-trickle: the candidates are in the answer, loopback only.
    assert re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ host", answer)
    assert "a=end-of-candidates" in answer
    assert (await request(service, "DELETE", headers["Location"]))[0] == 200
    assert (await request(service, "DELETE", headers["Location"]))[0] == 404


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
async def test_g711_is_decoded_at_8khz_and_resampled_at_the_edge(start_service, kit, codec) -> None:
    service = await start(start_service)
    seen: set[tuple[int, int]] = set()
    push = service.registry.push

    def spy(stream_id, samples, sample_rate, channels, **kw):
        seen.add((sample_rate, channels))
        return push(stream_id, samples, sample_rate, channels, **kw)

    service.registry.push = spy
    listener = service.listen("score.g711")
    result = await publish_array_async(kit.tone(4.5, 16_000), 16_000, base_url(service), stream_id="g711",
                                       speed=4.0, codec=codec, ice_addresses=LOOPBACK_ICE)
    assert result.codec == codec
    end = (await kit.collect_until_end(listener, "g711", timeout=20))[-1]
    assert seen == {(8_000, 1)}
    assert end.windows == 2 and abs(end.duration - 4.5) < 0.05


async def test_options_and_patch(start_service) -> None:
    service = await start(start_service)
    status, headers, _ = await request(service, "OPTIONS", "/whip/any", content_type=None)
    assert status == 204
    assert headers["Accept-Post"] == "application/sdp"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    # No trickle ICE or ICE restart: PATCH on a resource is 405, as RFC 9725 asks.
    status, _, _ = await request(service, "PATCH", "/whip/any/session", "a=candidate",
                                 content_type="application/trickle-ice-sdpfrag")
    assert status == 405


# --- refusals: one test per case ------------------------------------------------------------------


async def test_malformed_sdp_is_400(start_service, kit) -> None:
    service = await start(start_service)
    status, _, text = await request(service, "POST", "/whip/bad-1", "hello, this is not SDP")
    refused(400, text, "bad_sdp")
    offer = await make_offer()
    no_ice = "\r\n".join(line for line in offer.split("\r\n") if not line.startswith("a=ice-"))
    status, _, text = await request(service, "POST", "/whip/bad-2", no_ice)
    assert "ICE" in refused(400, text, "bad_sdp")["detail"]
    assert await rejects(service, kit, "bad_sdp") == 2
    assert service.whip.sessions == {}


async def test_offer_without_audio_is_422(start_service, kit) -> None:
    service = await start(start_service)
    status, _, text = await request(service, "POST", "/whip/video-only", await make_offer("video"))
    assert "no audio" in refused(422, text, "no_audio")["detail"]
    assert await rejects(service, kit, "no_audio") == 1


async def test_unsupported_codec_is_422(start_service, kit) -> None:
    service = await start(start_service)
    lines = []
    for line in (await make_offer()).split("\r\n"):
        if line.startswith("m=audio"):
            line = " ".join(line.split()[:3] + ["97"])
        elif line.startswith("a=rtpmap:"):
            continue
        elif line.startswith("a=mid:"):
            lines.append("a=rtpmap:97 iLBC/8000")
        lines.append(line)
    status, _, text = await request(service, "POST", "/whip/ilbc", "\r\n".join(lines))
    detail = refused(422, text, "unsupported_codec")["detail"]
    assert "iLBC/8000" in detail and "opus/48000" in detail
    assert await rejects(service, kit, "unsupported_codec") == 1


async def test_wrong_token_is_401(start_service, kit) -> None:
    service = await start(start_service, whip={"token": "s3cret"})
    offer = await make_offer()
    for token in (None, "wrong"):
        status, headers, text = await request(service, "POST", "/whip/auth", offer, token=token)
        refused(401, text, "unauthorized")
        assert headers["WWW-Authenticate"].startswith("Bearer")
    status, headers, _ = await request(service, "POST", "/whip/auth", offer, token="s3cret")
    assert status == 201
    assert (await request(service, "DELETE", headers["Location"], token="wrong"))[0] == 401
    assert (await request(service, "DELETE", headers["Location"], token="s3cret"))[0] == 200
    assert await rejects(service, kit, "unauthorized") == 3
    with pytest.raises(WhipClientError, match="401 unauthorized"):
        await publish_array_async(kit.tone(1.0), 16_000, base_url(service), stream_id="auth-2",
                                  token="wrong", ice_addresses=LOOPBACK_ICE)


async def test_duplicate_stream_id_while_active_is_409(start_service, kit) -> None:
    service = await start(start_service)
    listener = service.listen("score.dup")
    live = LivePublisher(service, kit, "dup")
    await wait_until(lambda: service.registry.get("dup") is not None)
    status, _, text = await request(service, "POST", "/whip/dup", await make_offer())
    refused(409, text, "duplicate_stream")
    await asyncio.sleep(1.5)  # the live stream (4x real time) reaches its first window regardless
    await live.finish()
    events = await kit.collect_until_end(listener, "dup", timeout=20)
    assert events[-1].reason == "end" and events[-1].windows >= 1 and events[-1].dropped == 0
    assert await rejects(service, kit, "duplicate_stream") == 1
    # Once it has ended, the id is free again.
    status, headers, _ = await request(service, "POST", "/whip/dup", await make_offer())
    assert status == 201


async def test_wrong_content_type_is_415(start_service, kit) -> None:
    service = await start(start_service)
    offer = await make_offer()
    for content_type in ("application/json", None):
        status, _, text = await request(service, "POST", "/whip/ctype", offer, content_type=content_type)
        refused(415, text, "bad_content_type")
    assert await rejects(service, kit, "bad_content_type") == 2


async def test_bad_requests_leave_a_live_stream_untouched(start_service, kit) -> None:
    service = await start(start_service, whip={"token": "t"})
    listener = service.listen("score.steady")
    live = LivePublisher(service, kit, "steady", seconds=5.5, speed=2.0, token="t")
    await wait_until(lambda: service.registry.get("steady") is not None)
    offer = await make_offer()
    cases = [("/whip/x", "garbage", "application/sdp", "t", 400), ("/whip/x", await make_offer("video"),
             "application/sdp", "t", 422), ("/whip/x", offer, "application/sdp", "nope", 401),
             ("/whip/steady", offer, "application/sdp", "t", 409), ("/whip/x", offer, "text/plain", "t", 415),
             ("/whip/bad%20id", offer, "application/sdp", "t", 400)]
    for path, body, content_type, token, expected in cases:
        status, _, _ = await request(service, "POST", path, body, content_type=content_type, token=token)
        assert status == expected, path
    result = await asyncio.wait_for(live.task, 30)  # ran its whole course
    end = (await kit.collect_until_end(listener, "steady", timeout=20))[-1]
    assert (end.reason, end.windows, end.dropped) == ("end", 3, 0)
    assert abs(end.duration - result.duration) < 0.05
    assert list(service.whip.sessions) == []


# --- how sessions end -----------------------------------------------------------------------------


class StallingTrack(FileAudioTrack):
    """Sends ``seconds`` of tone, then nothing at all (a frozen publisher)."""

    def __init__(self, kit, seconds: float) -> None:
        super().__init__(kit.tone(seconds), 16_000, speed=4.0)
        self._limit = int(seconds * 16_000)

    async def recv(self):
        if self._position >= self._limit:
            self.finished.set()
            await asyncio.Event().wait()
        return await super().recv()


async def test_silent_peer_is_closed_and_its_stream_ended(start_service, kit) -> None:
    service = await start(start_service, whip={"silence_timeout_s": 0.5})
    listener = service.listen("score.frozen")
    track = StallingTrack(kit, 4.5)
    async with WhipPublisher(endpoint_url(base_url(service), "frozen"), ice_addresses=LOOPBACK_ICE) as publisher:
        await publisher.publish(track)
        events = await kit.collect_until_end(listener, "frozen", timeout=20)
        assert events[-1].reason == "silence_timeout" and events[-1].windows == 2
        await wait_until(lambda: publisher.pc.connectionState == "closed")  # the service hung up
    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_whip_sessions_closed_total", reason="silence_timeout") == 1
    assert service.whip.sessions == {}


async def test_peer_that_disconnects_is_closed_and_its_stream_ended(start_service, kit) -> None:
    service = await start(start_service)
    listener = service.listen("score.gone")
    publisher = WhipPublisher(endpoint_url(base_url(service), "gone"), ice_addresses=LOOPBACK_ICE)
    track = FileAudioTrack(kit.tone(30.0), 16_000, speed=4.0)
    await publisher.publish(track)
    await wait_until(lambda: track.frames_sent > 250)  # about 5 s of audio
    await publisher.pc.close()  # hang up without DELETE
    end = (await kit.collect_until_end(listener, "gone", timeout=20))[-1]
    assert end.reason in ("track_ended", "peer_closed") and end.windows >= 1
    await wait_until(lambda: not service.whip.sessions)


async def test_stopping_the_service_closes_every_peer(start_service, kit) -> None:
    service = await start(start_service)
    listener = service.listen("score.")
    publishers = [LivePublisher(service, kit, f"live-{i}") for i in range(2)]
    await wait_until(lambda: all(service.registry.get(p.stream_id) for p in publishers))
    await service.stop()
    ends = {}
    async for event in listener:  # ends when the service has stopped
        if event.event == "end":
            ends[event.stream_id] = event.reason
    assert ends == {"live-0": "shutdown", "live-1": "shutdown"}
    assert service.whip.sessions == {}
    for publisher in publishers:  # each publisher sees the hang-up and stops by itself
        with pytest.raises(WhipClientError, match="connection_closed"):
            await asyncio.wait_for(publisher.task, 15)


async def test_delete_of_an_unknown_session_is_404(start_service, kit) -> None:
    service = await start(start_service)
    status, _, text = await request(service, "DELETE", "/whip/none/abc", content_type=None)
    refused(404, text, "unknown_session")


# --- the command line -----------------------------------------------------------------------------


async def test_whip_send_command_publishes_a_file(start_service, kit, tmp_path) -> None:
    service = await start(start_service)
    listener = service.listen("score.cli-1")
    path = tmp_path / "tone.wav"
    sf.write(path, kit.tone(4.5, 24_000, channels=2), 24_000, subtype="PCM_16")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamdet", "whip-send", str(path), "--url", base_url(service),
        "--stream-id", "cli-1", "--speed", "3", "--ice-addresses", "127.0.0.1", env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    line = json.loads(stdout)
    assert (line["stream_id"], line["sample_rate"], line["channels"], line["duration"]) == ("cli-1", 24_000, 2, 4.5)
    end = (await kit.collect_until_end(listener, "cli-1", timeout=20))[-1]
    assert end.reason == "end" and end.windows == 2 and abs(end.duration - 4.5) < 0.05

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamdet", "whip-send", str(path), "--url", base_url(service) + "/whip/bad%20id",
        "--ice-addresses", "127.0.0.1", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and b"400 bad_stream_id" in stderr


def test_endpoint_url() -> None:
    assert endpoint_url("http://h:8080", "a") == "http://h:8080/whip/a"
    assert endpoint_url("http://h:8080/", "a") == "http://h:8080/whip/a"
    assert endpoint_url("http://h:8080/whip/", "a") == "http://h:8080/whip/a"
    assert endpoint_url("https://h/ingest/whip/x?y=1", "a") == "https://h/ingest/whip/x?y=1"


def test_frame_conversion_reads_int16_like_soundfile() -> None:
    import av

    from streamdet.service.ingest.whip_session import frame_to_samples

    pcm = np.array([[-32768, 32767, 0, 16384]], dtype=np.int16)
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
    np.testing.assert_array_equal(frame_to_samples(frame), [[-1.0, 32767 / 32768], [0.0, 0.5]])
    planar = av.AudioFrame.from_ndarray(np.array([[0.5, 0.25], [-0.5, 0.0]], np.float32), format="fltp",
                                        layout="stereo")
    np.testing.assert_array_equal(frame_to_samples(planar), [[0.5, -0.5], [0.25, 0.0]])


async def test_peer_that_never_connects_is_closed(start_service, kit) -> None:
    service = await start(start_service, whip={"connect_timeout_s": 0.5})
    status, _, _ = await request(service, "POST", "/whip/ghost", await make_offer())  # its peer is gone
    assert status == 201
    await wait_until(lambda: not service.whip.sessions)
    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_whip_sessions_closed_total", reason="connect_timeout") == 1
    assert service.registry.get("ghost") is None


async def test_lost_packets_become_silence_so_media_time_holds() -> None:
    import av

    from streamdet.service.ingest import IngestContext, RejectReporter
    from streamdet.service.ingest.whip_session import WhipSession
    from streamdet.service.metrics import ServiceMetrics

    class Registry:
        def __init__(self) -> None:
            self.pushed: list[tuple[int, float]] = []

        def push(self, stream_id, samples, sample_rate, channels, **kw) -> None:
            self.pushed.append((len(samples), float(np.abs(samples).max())))

        def end(self, stream_id, reason) -> None:
            pass

    metrics = ServiceMetrics()
    registry = Registry()
    ctx = IngestContext(registry, RejectReporter(metrics), metrics, None)  # type: ignore[arg-type]
    pc = RTCPeerConnection(rtc_configuration())
    session = WhipSession("s", "id", pc, ctx, silence_timeout_s=1, connect_timeout_s=1, on_closed=lambda s: None)
    for pts in (0, 960, 2880, 2880 + 960 + 48_000 * 2):  # a 20 ms gap, then a 2 s pause (not filled)
        frame = av.AudioFrame.from_ndarray(np.full((1, 1920), 1000, np.int16), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48_000, pts
        frame.time_base = Fraction(1, 48_000)
        assert session._push(frame)
    assert registry.pushed == [(960, 1000 / 32768), (960, 1000 / 32768), (960, 0.0), (960, 1000 / 32768),
                               (960, 1000 / 32768)]
    assert metrics.whip_concealed._value.get() == pytest.approx(0.02)
    await pc.close()


async def _raw_post(service, path: str, head: str, parts: list[bytes]) -> tuple[int, str]:
    """POST over a bare socket, its body written in ``parts`` with a pause between them, so each
    arrives in its own TCP segment (a proxy or a WAN path splits offers like this)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", service.http_port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sdp\r\n"
                 f"Connection: close\r\n{head}\r\n".encode())
    for part in parts:
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(part)
    await writer.drain()
    response = await reader.read()
    writer.close()
    status_line, _, rest = response.decode("utf-8", "replace").partition("\r\n")
    return int(status_line.split()[1]), rest


def _thirds(data: bytes) -> list[bytes]:
    third = len(data) // 3
    return [data[:third], data[third:2 * third], data[2 * third:]]


async def test_an_offer_split_into_3_tcp_segments_is_answered_201(start_service, kit) -> None:
    """One ``read(n)`` returned only the first segment, and the offer was refused as bad SDP."""
    service = await start(start_service)
    offer = (await make_offer()).encode()
    status, text = await _raw_post(service, "/whip/split", f"Content-Length: {len(offer)}\r\n", _thirds(offer))
    assert status == 201, text
    assert "a=fingerprint" in text


async def test_a_chunked_offer_in_3_chunks_is_answered_201(start_service, kit) -> None:
    service = await start(start_service)
    offer = (await make_offer()).encode()
    chunks = [b"%x\r\n%s\r\n" % (len(part), part) for part in _thirds(offer)] + [b"0\r\n\r\n"]
    status, text = await _raw_post(service, "/whip/chunked", "Transfer-Encoding: chunked\r\n", chunks)
    assert status == 201, text


async def test_a_chunked_offer_over_the_limit_is_413(start_service, kit) -> None:
    service = await start(start_service)
    big = b"v=0\r\n" + b"a=x\r\n" * 14_000  # 84 KB, no Content-Length to refuse it early
    chunks = [b"%x\r\n%s\r\n" % (len(part), part) for part in _thirds(big)] + [b"0\r\n\r\n"]
    status, text = await _raw_post(service, "/whip/big", "Transfer-Encoding: chunked\r\n", chunks)
    assert status == 413, text
    assert await rejects(service, kit, "oversize") == 1


async def test_65_abandoned_offers_from_one_address_do_not_block_another(start_service, kit) -> None:
    """65 abandoned offers from one address: past ``whip.max_pending_per_address`` (16 by default)
    pending from that address they are refused with 503, while another address's offer succeeds
    (before, 64 of them filled every peer slot for 15 s)."""
    from streamdet.service.settings import WhipSettings

    limit = WhipSettings().max_pending_per_address
    service = await start(start_service, whip={"connect_timeout_s": 120.0})
    offer = await make_offer()
    statuses = []
    for i in range(65):
        status, _, _ = await request(service, "POST", f"/whip/abandoned-{i}", offer)
        statuses.append(status)
    assert statuses[:limit] == [201] * limit
    assert statuses[limit:] == [503] * (65 - limit)
    assert await rejects(service, kit, "max_pending") == 65 - limit
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as http, http.post(
            base_url(service) + "/whip/elsewhere", data=offer, headers={"Content-Type": "application/sdp"}) as response:
        assert response.status == 201, await response.text()


async def test_the_9th_pending_offer_is_refused_with_a_limit_of_8(start_service, kit) -> None:
    service = await start(start_service, whip={"connect_timeout_s": 120.0, "max_pending_per_address": 8})
    offer = await make_offer()
    statuses = [(await request(service, "POST", f"/whip/p-{i}", offer))[0] for i in range(9)]
    assert statuses == [201] * 8 + [503]


async def test_an_offer_while_scoring_is_at_its_1_window_budget_is_503_overloaded(start_service, kit, push) -> None:
    # A scorer busy for 2 s per window and a budget of one waiting window: of two 1 s ZeroMQ
    # streams, the first is being scored and the second waits, so the service is at its budget.
    class Busy(kit.FakeScorer):
        async def score(self, windows: np.ndarray) -> np.ndarray:
            self.scoring.set()
            return await super().score(windows)

    scorer = Busy(delay_s=2.0)
    scorer.scoring = asyncio.Event()
    service = await start_service(scorer, whip=WHIP, scoring={"max_batch": 1, "max_pending_windows": 1})
    socket = push(service.ingest_endpoint)
    await kit.send_all(socket, kit.frames_of("first", kit.tone(1.0)))
    await asyncio.wait_for(scorer.scoring.wait(), 10)
    await kit.send_all(socket, kit.frames_of("second", kit.tone(1.0)))
    await wait_until(lambda: service.batcher.pending == 1)
    status, _, text = await request(service, "POST", "/whip/late", await make_offer())
    assert "over_budget" in refused(503, text, "overloaded")["detail"]
    assert await rejects(service, kit, "overloaded") == 1
    assert service.whip.sessions == {}
