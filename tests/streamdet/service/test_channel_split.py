"""Channel split: an ingest with ``split_channels`` has each channel of a stereo stream scored as its
own stream (``<id>/0``, ``<id>/1``) instead of mixed to mono, so that one party's genuine voice
cannot dilute the other's cloned one. Shown over ZeroMQ; the registry does it for every ingest."""

from __future__ import annotations

import numpy as np
import pytest

from streamdet.audio import load_audio


def loud_is_fake(window: np.ndarray) -> float:
    """A fake scorer that calls loud windows spoof: P(bona fide) 0.05 above an RMS of 0.1."""
    return 0.05 if float(np.sqrt(np.mean(window ** 2))) > 0.1 else 0.95


async def ends_by_stream(listener, count: int) -> dict[str, list]:
    events: dict[str, list] = {}
    ended = 0
    while ended < count:
        event = await listener.get(60)
        events.setdefault(event.stream_id, []).append(event)
        ended += event.event == "end"
    return events


async def test_split_channels_score_each_channel_as_its_own_stream(start_service, kit, push) -> None:
    service = await start_service(kit.FakeScorer(loud_is_fake), ingest={"split_channels": True})
    listener = service.listen()
    stereo = np.concatenate([kit.tone(5.0, channels=1) * 2, kit.tone(5.0, channels=1) * 0.1], axis=1)
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("call", stereo))
    events = await ends_by_stream(listener, 2)
    assert set(events) == {"call/0", "call/1"}
    assert "raised" in [e.event for e in events["call/0"]]
    assert "raised" not in [e.event for e in events["call/1"]]
    assert [e.reason for e in (events["call/0"][-1], events["call/1"][-1])] == ["end", "end"]
    assert events["call/0"][-1].duration == pytest.approx(5.0, abs=0.01)


async def test_without_split_the_channels_are_mixed(start_service, kit, push) -> None:
    service = await start_service(kit.FakeScorer(loud_is_fake))
    listener = service.listen()
    stereo = np.concatenate([kit.tone(3.0, channels=1) * 2, kit.tone(3.0, channels=1) * 0.1], axis=1)
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("call", stereo))
    events = await kit.collect_until_end(listener, "call")
    assert events[-1].windows >= 1 and service.registry.split_ingests == set()


async def test_a_split_stream_refuses_a_change_of_channel_count(start_service, kit, push) -> None:
    service = await start_service(kit.FakeScorer(), ingest={"split_channels": True})
    listener = service.listen()
    frames = kit.frames_of("call", kit.tone(1.0, channels=2), end=False)
    frames += kit.frames_of("call", kit.tone(1.0, channels=1), first_seq=len(frames), end=False)
    frames += kit.frames_of("call", kit.tone(0.2, channels=2), first_seq=2 * len(frames))
    await kit.send_all(push(service.ingest_endpoint), frames)
    events = await ends_by_stream(listener, 2)
    assert set(events) == {"call/0", "call/1"}
    _, metrics = await kit.http_get(service, "/metrics")
    assert kit.metric_value(metrics, "streamdet_ingest_rejects_total", reason="format_change") == 5


@pytest.mark.reference
async def test_a_fake_voice_on_one_channel_alerts_and_a_real_one_on_the_other_does_not(
        shared_dir, vocoder_scorer, start_service, kit, push) -> None:
    fake, real = load_audio(shared_dir / kit.VOCODER_FAKE), load_audio(shared_dir / kit.VOCODER_REAL)
    length = min(len(fake), len(real))
    stereo = np.stack([fake[:length], real[:length]], axis=1)
    service = await start_service(vocoder_scorer, ingest={"split_channels": True}, alerts={"k": 1, "n": 1})
    listener = service.listen()
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("call", stereo))
    events = await ends_by_stream(listener, 2)
    scores = {sid: [round(e.p_spoof, 3) for e in evs if e.event == "score"] for sid, evs in events.items()}
    assert "raised" in [e.event for e in events["call/0"]], scores
    assert "raised" not in [e.event for e in events["call/1"]], scores
    # Mixed to mono, the genuine voice would have diluted the fake one: what split avoids.
