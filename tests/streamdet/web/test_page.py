"""The monitoring page without a browser: static files, and the server-sent event stream ``/events``."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp

from streamdet.service.events import EndEvent
from streamdet.service.web import STATIC_DIR


async def get(service, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{service.http_port}{path}") as response:
        return response.status, response.content_type, await response.text()


class EventStream:
    """A client of ``/events``: ``await next_event()`` gives each ``data:`` message as a dict."""

    def __init__(self, service, query: str = "") -> None:
        self.url = f"http://127.0.0.1:{service.http_port}/events{query}"

    async def __aenter__(self) -> EventStream:
        self._http = aiohttp.ClientSession()
        self.response = await self._http.get(self.url)
        return self

    async def next_event(self, timeout: float = 10.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                line = await self.response.content.readline()
                if not line:
                    raise EOFError("the event stream ended")
                if line.startswith(b"data: "):
                    return json.loads(line[len(b"data: "):])

    async def __aexit__(self, *exc: object) -> None:
        self.response.close()
        await self._http.close()


async def test_page_and_its_assets_are_served(start_service) -> None:
    service = await start_service()
    status, content_type, html = await get(service, "/")
    assert (status, content_type) == (200, "text/html")
    for marker in ('id="mic-start"', "Test with my microphone", 'id="streams"', 'id="alert-log"'):
        assert marker in html
    for asset, expected in (("static/app.js", "javascript"), ("static/style.css", "text/css")):
        assert f'"{asset}"' in html
        status, content_type, _ = await get(service, "/" + asset)
        assert status == 200 and expected in content_type


def test_page_needs_nothing_from_the_network() -> None:
    # Works offline: no CDN, no web font, no absolute URL of any kind in what the page loads.
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"https?://|//cdn|@import|fonts\.", text), path.name
    assert sorted(p.name for p in STATIC_DIR.iterdir()) == ["app.js", "index.html", "style.css"]


async def test_event_stream_carries_the_zeromq_events(start_service, kit, push) -> None:
    service = await start_service(kit.FakeScorer(p_bonafide=0.1))  # p_spoof 0.9: every window is evidence
    async with EventStream(service) as stream:
        assert stream.response.content_type == "text/event-stream"
        hello = await stream.next_event()
        assert hello == {"event": "hello", "v": 1, "model_id": "fake@0", "spoof_threshold": 0.5, "threshold": 0.5,
                         "whip": True, "whip_token_required": False,
                         "alert_rule": {"k": 2, "n": 3, "m": 3, "min_speech": 0.0}}
        await kit.send_all(push(service.ingest_endpoint), kit.frames_of("sse-1", kit.tone(6.0)))
        events = []
        while not events or events[-1]["event"] != "end":
            events.append(await stream.next_event())
    assert [e["event"] for e in events] == ["score", "score", "raised", "score", "end"]
    raised = events[2]
    assert raised["topic"] == "alert.sse-1" and raised["window"] == 1 and raised["p_spoof"] > 0.5
    assert events[0]["topic"] == "score.sse-1" and events[-1]["reason"] == "end"


async def test_event_stream_filters_by_prefix(start_service, kit, push) -> None:
    service = await start_service(kit.FakeScorer(p_bonafide=0.1))
    async with EventStream(service, "?prefix=alert.") as stream:
        await stream.next_event()  # hello
        await kit.send_all(push(service.ingest_endpoint), kit.frames_of("sse-2", kit.tone(6.0)))
        event = await stream.next_event()
    assert (event["event"], event["stream_id"]) == ("raised", "sse-2")


async def test_event_stream_ends_when_the_service_stops(start_service) -> None:
    service = await start_service()
    async with EventStream(service) as stream:
        await stream.next_event()
        await service.stop()
        try:
            await stream.next_event(timeout=10)
            raise AssertionError("an event after shutdown")
        except (EOFError, aiohttp.ClientPayloadError):
            pass


async def test_token_requirement_is_announced(start_service) -> None:
    service = await start_service(whip={"token": "t"})
    async with EventStream(service) as stream:
        assert (await stream.next_event())["whip_token_required"] is True


async def test_page_and_whip_can_be_turned_off(start_service) -> None:
    service = await start_service(http={"page": False}, whip={"enabled": False})
    assert (await get(service, "/"))[0] == 404
    assert (await get(service, "/events"))[0] == 404
    assert service.whip is None
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{service.http_port}/whip/x", data="v=0", headers={"Content-Type": "application/sdp"}
    ) as response:
        assert response.status == 404
    status, _, _ = await get(service, "/healthz")
    assert status == 200


async def test_events_and_streams_need_the_http_token_when_set(start_service, kit) -> None:
    service = await start_service(http={"token": "s3cret"})
    assert (await get(service, "/events"))[0] == 401
    assert (await get(service, "/events?token=wrong"))[0] == 401
    assert (await get(service, "/streams"))[0] == 401
    assert (await get(service, "/events/journal?since=0"))[0] == 401
    async with EventStream(service, "?token=s3cret") as stream:  # EventSource's way: in the query
        assert (await stream.next_event())["event"] == "hello"
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{service.http_port}/streams", headers={"Authorization": "Bearer s3cret"}) as response:
        assert response.status == 200
    assert (await get(service, "/healthz"))[0] == 200  # probes stay open
    _, _, metrics = await get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_sse_refused_total", reason="unauthorized") == 2


async def test_200_sse_clients_the_201st_is_refused_and_events_are_serialised_once(
        start_service, kit, monkeypatch) -> None:
    """200 SSE clients: the 201st is refused with 503 (counted); each event is serialised once for
    all of them (200 clients used to serialise every event 200 times: p50 latency 57 ms -> 7.3 s)."""
    import streamdet.service.web as web_module

    serialised: list[str] = []
    real = web_module.sse_message

    def counting(data: dict) -> bytes:
        if "topic" in data:
            serialised.append(data["event"])
        return real(data)

    monkeypatch.setattr(web_module, "sse_message", counting)
    service = await start_service(kit.FakeScorer(p_bonafide=0.1), http={"max_sse_clients": 200})
    streams = [EventStream(service) for _ in range(200)]
    for stream in streams:
        await stream.__aenter__()
    try:
        for stream in streams:
            assert (await stream.next_event())["event"] == "hello"
        assert (await get(service, "/events"))[0] == 503
        for i in range(3):
            service.publisher.publish(EndEvent(stream_id=f"s{i}", reason="end", duration=1.0, windows=0, dropped=0,
                                               alert=False, wall_time=0.0, model_id="fake@0"))
        for stream in streams:
            assert [(await stream.next_event())["stream_id"] for _ in range(3)] == ["s0", "s1", "s2"]
        assert serialised == ["end", "end", "end"]
        _, _, metrics = await get(service, "/metrics")
        assert kit.metric_value(metrics, "streamdet_sse_refused_total", reason="max_clients") == 1
        assert kit.metric_value(metrics, "streamdet_sse_clients") == 200
    finally:
        for stream in streams:
            await stream.__aexit__()
    # A slot is free again once a client has left: the server notices at its next write.
    service.publisher.publish(EndEvent(stream_id="s3", reason="end", duration=1.0, windows=0, dropped=0,
                                       alert=False, wall_time=0.0, model_id="fake@0"))
    for _ in range(200):
        if service.app[web_module.SSE_CLIENTS][0] == 0:
            break
        await asyncio.sleep(0.05)
    async with EventStream(service) as again:
        assert (await again.next_event())["event"] == "hello"
