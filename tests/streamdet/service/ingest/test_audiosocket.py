"""The AudioSocket ingest, fed message sequences written from Asterisk's protocol description
(kind, 16-bit big-endian length, payload): every kind, the ways a call ends, and malformed input
counted while another call keeps scoring. The last test streams a fake clip and expects an alert."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from streamdet.audio import load_audio, resample
from streamdet.service.ingest.audiosocket import message

CALL = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")


def audio_messages(samples: np.ndarray, kind: int = 0x10, rate: int = 8_000) -> list[bytes]:
    """20 ms messages of signed linear 16-bit little-endian PCM."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    step = rate // 50
    return [message(kind, pcm[s:s + step].tobytes()) for s in range(0, len(pcm), step)]


def tone(seconds: float, rate: int = 8_000) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)


async def audiosocket_service(start_service, kit, scorer=None, **settings):
    return await start_service(scorer or kit.FakeScorer(),
                               ingests={"audiosocket": {"enabled": True, "port": 0, **settings}})


async def call(port: int, messages: list[bytes], close: bool = True) -> tuple[asyncio.StreamReader,
                                                                              asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for data in messages:
        writer.write(data)
    await writer.drain()
    if close:
        writer.close()
        await writer.wait_closed()
    return reader, writer


async def test_a_call_uuid_audio_dtmf_hangup_is_one_stream_ended_by_the_hangup(start_service, kit) -> None:
    service = await audiosocket_service(start_service, kit, stream_prefix="pbx/")
    listener = service.listen()
    port = service.ingests["audiosocket"].port
    sequence = [message(0x01, CALL.bytes), *audio_messages(tone(1.5)), message(0x03, b"5"),
                *audio_messages(tone(1.5)), message(0x00)]
    await call(port, sequence, close=False)  # the hang-up message alone ends it
    events = await kit.collect_until_end(listener, f"pbx/{CALL}")
    assert (events[-1].reason, events[-1].duration) == ("hangup", pytest.approx(3.0, abs=0.01))
    _, metrics = await kit.http_get(service, "/metrics")
    kinds = {k: kit.metric_value(metrics, "streamdet_audiosocket_messages_total", kind=k)
             for k in ("uuid", "audio", "dtmf", "hangup")}
    assert kinds == {"uuid": 1, "audio": 150, "dtmf": 1, "hangup": 1}


@pytest.mark.parametrize(("ending", "reason"), [
    ([message(0xFF, b"\x01")], "error"),  # Asterisk's code 0x01: the calling party hung up
    ([message(0xFF)], "error"),  # an error without a code
    ([], "disconnected"),  # socket closure is also sufficient
])
async def test_errors_and_closed_sockets_end_the_call(start_service, kit, ending, reason) -> None:
    service = await audiosocket_service(start_service, kit)
    listener = service.listen()
    await call(service.ingests["audiosocket"].port, [message(0x01, CALL.bytes), *audio_messages(tone(1.0)),
                                                     *ending])
    events = await kit.collect_until_end(listener, str(CALL))
    assert (events[-1].reason, events[-1].duration) == (reason, pytest.approx(1.0, abs=0.01))


async def test_a_silent_connection_is_ended_after_the_idle_timeout(start_service, kit) -> None:
    service = await audiosocket_service(start_service, kit, idle_timeout_s=0.3)
    listener = service.listen()
    _, writer = await call(service.ingests["audiosocket"].port,
                           [message(0x01, CALL.bytes), *audio_messages(tone(0.5))], close=False)
    events = await kit.collect_until_end(listener, str(CALL))
    writer.close()
    assert events[-1].reason == "idle"


async def test_higher_rate_audio_kinds_are_taken_at_their_rate(start_service, kit) -> None:
    service = await audiosocket_service(start_service, kit)
    listener = service.listen()
    await call(service.ingests["audiosocket"].port,
               [message(0x01, CALL.bytes), *audio_messages(tone(2.0, 16_000), 0x12, 16_000), message(0x00)])
    events = await kit.collect_until_end(listener, str(CALL))
    assert events[-1].duration == pytest.approx(2.0, abs=0.01)


async def test_malformed_messages_are_counted_and_another_call_keeps_scoring(start_service, kit) -> None:
    service = await audiosocket_service(start_service, kit)
    listener = service.listen()
    port = service.ingests["audiosocket"].port
    good = uuid.uuid4()
    reader, good_writer = await call(port, [message(0x01, good.bytes), *audio_messages(tone(1.0))], close=False)
    bad_calls = [
        [*audio_messages(tone(0.1)), message(0x01, uuid.uuid4().bytes)],  # audio before the UUID: closed
        [message(0x01, b"short")],  # a UUID of 5 bytes: closed
        [message(0x01, good.bytes)],  # the UUID of a call already connected: closed
        [message(0x01, uuid.uuid4().bytes), message(0x42, b"??"), message(0x10, b"\x00\x01\x02"),
         message(0x01, uuid.uuid4().bytes), message(0x00)],  # unknown kind, odd audio, second UUID: skipped
        [message(0x01, uuid.uuid4().bytes), b"\x10\x01\x40" + b"\x00" * 10],  # cut inside a message
    ]
    for sequence in bad_calls:
        bad_reader, bad_writer = await call(port, sequence, close=False)
        bad_writer.write_eof()  # (the cut message stays cut)
        assert await bad_reader.read() == b""  # the connection ends; nothing is sent back
        bad_writer.close()
    for data in audio_messages(tone(1.0)) + [message(0x00)]:
        good_writer.write(data)
    await good_writer.drain()
    events = await kit.collect_until_end(listener, str(good))
    good_writer.close()
    assert (events[-1].reason, events[-1].duration) == ("hangup", pytest.approx(2.0, abs=0.01))
    _, metrics = await kit.http_get(service, "/metrics")
    for reason in ("audiosocket_no_uuid", "audiosocket_bad_uuid", "duplicate_stream", "audiosocket_unknown_kind",
                   "audiosocket_audio_size", "audiosocket_uuid_repeated", "audiosocket_truncated"):
        assert kit.metric_value(metrics, "streamdet_ingest_rejects_total", reason=reason) == 1, reason
    assert kit.metric_value(metrics, "streamdet_audiosocket_messages_total", kind="unknown") == 1
    assert service.registry.active == 0


@pytest.mark.reference
async def test_a_fake_clip_over_audiosocket_raises_an_alert_and_the_hangup_ends_it(
        shared_dir, vocoder_scorer, start_service, kit) -> None:
    service = await audiosocket_service(start_service, kit, vocoder_scorer)
    listener = service.listen()
    clip = resample(load_audio(shared_dir / kit.VOCODER_FAKE), 16_000, 8_000)
    await call(service.ingests["audiosocket"].port,
               [message(0x01, CALL.bytes), *audio_messages(clip), message(0x00)])
    events = await kit.collect_until_end(listener, str(CALL), timeout=120)
    assert "raised" in [e.event for e in events]
    assert (events[-1].reason, events[-1].alert) == ("hangup", True)
    assert events[-1].duration == pytest.approx(10.0, abs=0.01)


async def test_a_zeromq_frame_with_the_calls_stream_id_can_neither_end_nor_feed_it(start_service, kit, push) -> None:
    """Stream ids meet in one registry: the call belongs to its connection, so a ZeroMQ sender's
    ``end`` (or audio) for ``pbx/<uuid>`` is refused (``not_owner``) and the call runs its full 3 s."""
    from streamdet.service.frames import encode_frame

    service = await audiosocket_service(start_service, kit, stream_prefix="pbx/")
    listener = service.listen()
    stream_id = f"pbx/{CALL}"
    _, writer = await call(service.ingests["audiosocket"].port,
                           [message(0x01, CALL.bytes), *audio_messages(tone(1.5))], close=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while (session := service.registry.get(stream_id)) is None or session.duration < 1.4:  # (the resampler holds a few ms back)
        assert loop.time() < deadline, "the call's first 1.5 s never arrived"
        await asyncio.sleep(0.02)
    forged = push(service.ingest_endpoint)
    await forged.send_multipart(encode_frame(stream_id, 0, np.zeros((160, 1), np.float32), 8_000, end=True))
    while service.metrics.rejects.labels("not_owner")._value.get() < 1:
        assert loop.time() < deadline, "the forged frame was never refused"
        await asyncio.sleep(0.02)
    for data in [*audio_messages(tone(1.5)), message(0x00)]:
        writer.write(data)
    await writer.drain()
    events = await kit.collect_until_end(listener, stream_id)
    assert (events[-1].reason, events[-1].duration) == ("hangup", pytest.approx(3.0, abs=0.01))
    writer.close()
