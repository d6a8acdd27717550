"""What a consumer that joins late or watches alerts alone needs: ``GET /streams`` (the live
streams' state), ``ended`` on the alert topic, and heartbeats on the event socket."""

from __future__ import annotations

import asyncio
import json

import pytest

from streamdet.client import Subscriber
from streamdet.errors import ServerGoneError


async def test_streams_shows_a_live_stream_with_its_alert_state(start_service, kit, push) -> None:
    service = await start_service(kit.FakeScorer(p_bonafide=0.1))  # p_spoof 0.9: raises after 2 windows
    assert json.loads((await kit.http_get(service, "/streams"))[1]) == {"v": 1, "streams": []}
    alerts = service.listen("alert.")
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("live-1", kit.tone(6.0, rate=8000), rate=8000,
                                                                    end=False))
    assert (await alerts.get(30)).event == "raised"

    status, body = await kit.http_get(service, "/streams")
    (stream,) = json.loads(body)["streams"]
    last = stream.pop("last_window")
    duration = stream.pop("duration")
    assert status == 200 and stream == {"stream_id": "live-1", "ingest": "zmq", "sample_rate": 8000, "channels": 1,
                                        "windows": 2, "dropped": 0, "pending": 0, "alert": True}
    assert (last["window"], last["p_spoof"]) == (1, pytest.approx(0.9)) and last["end"] == pytest.approx(5.0375)
    assert last["end"] <= duration <= 6.0

    service.registry.end("live-1")
    await kit.collect_until_end(service.listen("score.live-1"), "live-1")
    assert json.loads((await kit.http_get(service, "/streams"))[1])["streams"] == []


async def test_a_stream_ending_while_raised_closes_the_alert_on_the_alert_topic(start_service, kit, push) -> None:
    service = await start_service(kit.FakeScorer(lambda w: 0.9 if w.max() < 0.2 else 0.1))
    async with Subscriber(service.events_endpoint, ["alert."]) as subscriber:
        await subscriber.wait_connected()
        quiet, loud = kit.tone(6.0) * 0.5, kit.tone(6.0)  # quiet: bona fide, never raised
        await kit.send_all(push(service.ingest_endpoint), kit.frames_of("calm", quiet))
        await kit.send_all(push(service.ingest_endpoint), kit.frames_of("fake", loud))
        raised = await subscriber.recv(timeout=30)
        ended = await subscriber.recv(timeout=30)
    assert (raised.event, raised.stream_id) == ("raised", "fake")  # nothing for "calm", which never raised
    assert (ended.event, ended.stream_id, ended.alert, ended.reason) == ("ended", "fake", True, "end")
    assert ended.windows == 3 and ended.duration == 6.0
    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_alerts_total", event="ended") == 1


async def test_heartbeats_keep_a_quiet_subscriber_waiting_and_their_absence_ends_it(start_service, kit) -> None:
    service = await start_service(alerts={"heartbeat_s": 0.05})
    async with Subscriber(service.events_endpoint, ["alert.nothing-here"]) as subscriber:
        await subscriber.wait_connected()
        waiting = asyncio.create_task(subscriber.recv(idle_timeout=0.5))
        first = None
        while first is None or subscriber.last_heartbeat.wall_time - first < 1.0:  # twice the timeout
            await asyncio.sleep(0.02)
            if subscriber.last_heartbeat is not None and first is None:
                first = subscriber.last_heartbeat.wall_time
        assert not waiting.done()  # heartbeats only: the service is alive, no event yet
        heartbeat = subscriber.last_heartbeat
        assert (heartbeat.event, heartbeat.interval_s, heartbeat.model_id) == ("heartbeat", 0.05, "fake@0")
        await service.stop()
        with pytest.raises(ServerGoneError, match="is the server at tcp://127.0.0.1"):
            await waiting


async def test_without_score_events_only_alert_transitions_and_the_end_go_out(start_service, kit, push) -> None:
    service = await start_service(kit.FakeScorer(p_bonafide=0.1), events={"score_events": False})
    everything = service.listen("")
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("fake-1", kit.tone(6.0)))
    seen = []
    while not seen or seen[-1].event != "ended":
        seen.append(await everything.get(30))
    assert [event.event for event in seen] == ["raised", "end", "ended"]
    assert seen[1].windows == 3  # every window was scored, none published as a score event
    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_windows_scored_total") == 3
