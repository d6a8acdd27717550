"""Webhooks with a real receiver on loopback: alerts signed, retried from the persistent outbox while
the receiver is down (across a restart of the service), each delivered once per idempotency key;
dead-lettered after ``max_attempts`` failures."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pytest

from streamdet.service.sinks.signature import sign, verify

pytestmark = pytest.mark.timeout(120)

SECRET = "test-secret"
ALERTS = {"k": 1, "n": 1, "m": 1}  # the fake scorer's p_spoof 0.9: every stream raises at once


def webhook_settings(url: str, tmp_path: Path, **extra) -> dict:
    return {"outbox_path": str(tmp_path / "outbox.sqlite3"), "node_id": "node-w",
            "webhooks": [{"url": url, "secret": SECRET, "backoff_s": 0.2, "backoff_max_s": 1.0,
                          "max_attempts": 1000, **extra}]}


async def alerts_of(kit, push, service, stream_ids: list[str]) -> list:
    """Send a short stream for each id; the alert events they cause (until each one's ``ended``)."""
    listener = service.listen("alert.")
    socket = push(service.ingest_endpoint)
    for stream_id in stream_ids:
        await kit.send_all(socket, kit.frames_of(stream_id, kit.tone(2.5)))
    events, waiting = [], set(stream_ids)
    while waiting:
        event = await listener.get(60)
        events.append(event)
        if event.event == "ended":
            waiting.discard(event.stream_id)
    listener.close()
    return events


def sink_metric(service, kit, name: str, **labels: str) -> float:
    return kit.metric_value(service.metrics.render().decode(), name, sink="webhook-0", **labels)


async def test_alerts_reach_a_receiver_that_was_down_once_each_signed(
        start_service, kit, push, webhook_receiver, tmp_path, outage_s) -> None:
    settings = webhook_settings(webhook_receiver.url, tmp_path)
    first = await start_service(kit.FakeScorer(0.1), alerts=ALERTS, events=settings)
    started = time.monotonic()
    alerts = await alerts_of(kit, push, first, ["call-1", "call-2"])
    while sink_metric(first, kit, "streamdet_sink_events_total", state="retried") == 0:
        await asyncio.sleep(0.05)  # the receiver is down: attempts fail and are retried
    await first.stop()  # the undelivered alerts wait in the outbox for the next start

    second = await start_service(kit.FakeScorer(0.1), alerts=ALERTS, events=settings)
    assert sink_metric(second, kit, "streamdet_sink_outbox", state="pending") == len(alerts)
    await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - started)))
    await webhook_receiver.start()
    keys = {e.event_id for e in alerts}
    await webhook_receiver.wait_for(keys)
    while sink_metric(second, kit, "streamdet_sink_outbox", state="pending"):
        await asyncio.sleep(0.05)

    assert Counter(r.key for r in webhook_receiver.requests) == Counter(keys)  # once per idempotency key
    by_key = {e.event_id: e for e in alerts}
    for request in webhook_receiver.requests:
        assert verify(SECRET, request.signature, request.body)
        assert not verify("another secret", request.signature, request.body)
        body = json.loads(request.body)
        assert body["event_id"] == request.key and body["event"] == by_key[request.key].event
        assert int(request.attempt) > 1  # each had failed while the receiver was down
    assert [e.event for e in alerts].count("raised") == 2
    assert sink_metric(second, kit, "streamdet_sink_events_total", state="delivered") == len(alerts)


async def test_failing_alerts_move_to_the_dead_letters(start_service, kit, push, webhook_receiver,
                                                       tmp_path) -> None:
    webhook_receiver.status = 500
    await webhook_receiver.start()
    service = await start_service(kit.FakeScorer(0.1), alerts=ALERTS, events=webhook_settings(
        webhook_receiver.url, tmp_path, max_attempts=2, backoff_s=0.05, events=["raised"]))
    alerts = await alerts_of(kit, push, service, ["doomed"])
    raised = [e for e in alerts if e.event == "raised"]
    while sink_metric(service, kit, "streamdet_sink_outbox", state="dead") < len(raised):
        await asyncio.sleep(0.05)
    sink = service.sinks[0]
    dead = await asyncio.to_thread(sink.outbox.dead_letters)
    assert [(d["event_id"], d["attempts"], d["last_error"]) for d in dead] == [(raised[0].event_id, 2, "HTTP 500")]
    assert [r.attempt for r in webhook_receiver.requests] == ["1", "2"]  # only raised: the filter holds
    assert sink_metric(service, kit, "streamdet_sink_events_total", state="dead") == 1
    assert sink_metric(service, kit, "streamdet_sink_outbox", state="pending") == 0


def test_signature_binds_secret_body_and_time() -> None:
    body = b'{"event": "raised"}'
    now = 1_700_000_000
    header = sign(SECRET, now, body)
    assert header.startswith(f"t={now},v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET, header, body, now=now + 10)
    assert not verify(SECRET, header, body + b" ", now=now)
    assert not verify("wrong", header, body, now=now)
    assert not verify(SECRET, header, body, now=now + 301)  # too old: a replayed capture
    assert not verify(SECRET, header.replace(f"t={now}", f"t={now + 1}"), body, now=now)
    assert not verify(SECRET, "garbage", body, now=now)


def test_the_documented_verification_snippet_accepts_our_signatures() -> None:
    text = (Path(__file__).resolve().parents[4] / "docs" / "protocol.md").read_text()
    section = text[text.index("### Webhooks"):]
    snippet = section[section.index("```python") + len("```python"):section.index("```", section.index("```python") + 9)]
    namespace: dict = {}
    exec(snippet, namespace)
    body = b'{"event": "raised", "event_id": "n-1"}'
    header = sign(SECRET, int(time.time()), body)
    assert namespace["verify"](SECRET.encode(), header, body)
    assert not namespace["verify"](SECRET.encode(), header, body + b" ")
