"""One foreign frame must not blind a stream, and idle senders must not hold every slot.

A real service on loopback and real ZeroMQ sockets. The victim streams 500 frames of 20 ms
(10 s) from 127.0.0.1; the attacker connects from 127.0.0.2 (another host, as the service sees it)
or with another CURVE key. The fake scorer calls every window spoof, so a stream that is heard to
its end raises its alert.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

from streamdet.service.curve import make_client
from streamdet.service.frames import encode_frame

FRAMES = 500
FRAME = 320  # 20 ms at 16 kHz
VICTIM = "victim-call"


def other_host(endpoint: str) -> str:
    """The service's endpoint, connected to from 127.0.0.2: another peer address on loopback."""
    return "tcp://127.0.0.2:0;" + endpoint.removeprefix("tcp://")


def victim_frames(kit, token: str | None = None) -> list[list[bytes]]:
    audio = kit.tone(FRAMES * FRAME / 16_000, freq=180.0)
    extra = {} if token is None else {"token": token}
    return [encode_frame(VICTIM, seq, audio[seq * FRAME:(seq + 1) * FRAME], 16_000,
                         end=seq == FRAMES - 1, **extra) for seq in range(FRAMES)]


async def until(condition, timeout: float = 20.0) -> None:
    """Wait (polling) until ``condition()`` holds; a bounded wait, not a timed assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)


def rejects(service, reason: str) -> float:
    return service.metrics.rejects.labels(reason)._value.get()


def accepted(service) -> float:
    return service.metrics.frames.labels("zmq")._value.get()


async def stream_with_one_foreign_frame(kit, service, victim, attacker, foreign: list[bytes],
                                        reason: str, token: str | None = None) -> list:
    """100 victim frames, the foreign frame (refused, for ``reason``), then the other 400."""
    listener = service.listen()
    frames = victim_frames(kit, token)
    await kit.send_all(victim, frames[:100])
    await until(lambda: (s := service.registry.get(VICTIM)) is not None and s.last_seq == 99)
    before = rejects(service, reason)
    await attacker.send_multipart(foreign)
    await until(lambda: rejects(service, reason) > before or service.registry.get(VICTIM) is None
                or service.registry.get(VICTIM).last_seq != 99)
    await kit.send_all(victim, frames[100:])
    return await kit.collect_until_end(listener, VICTIM, timeout=30)


@pytest.mark.parametrize("foreign", ["seq_2_62", "end_true", "other_rate"])
async def test_a_foreign_frame_from_another_host_costs_none_of_500_frames_and_the_alert_is_raised(
        foreign: str, kit, start_service, push) -> None:
    """Measured before: one such frame got 401-494 of the 500 real frames refused, and no alert."""
    service = await start_service(kit.FakeScorer(0.1), limits={"idle_timeout_s": 3.0})
    victim, attacker = push(service.ingest_endpoint), push(other_host(service.ingest_endpoint))
    silence = np.zeros((FRAME, 1), np.float32)
    message = {"seq_2_62": encode_frame(VICTIM, 2**62, silence, 16_000),
               "end_true": encode_frame(VICTIM, 100, silence, 16_000, end=True),
               "other_rate": encode_frame(VICTIM, 100, np.zeros((160, 1), np.float32), 8_000)}[foreign]
    events = await stream_with_one_foreign_frame(kit, service, victim, attacker, message, "not_owner")
    end = events[-1]
    assert (end.reason, end.duration) == ("end", 10.0)
    assert "raised" in [e.event for e in events]
    assert accepted(service) == FRAMES  # every genuine frame, and only those
    assert rejects(service, "not_owner") == 1


async def test_a_seq_jump_to_2_62_from_the_sender_itself_is_refused_not_adopted(kit, start_service, push) -> None:
    """The same sender (no other identity to tell it by): the jump is refused, all 500 frames count."""
    service = await start_service(kit.FakeScorer(0.1), limits={"idle_timeout_s": 3.0})
    sock = push(service.ingest_endpoint)
    jump = encode_frame(VICTIM, 2**62, np.zeros((FRAME, 1), np.float32), 16_000)
    events = await stream_with_one_foreign_frame(kit, service, sock, sock, jump, "seq_gap")
    assert (events[-1].reason, events[-1].duration) == ("end", 10.0)
    assert "raised" in [e.event for e in events]
    assert accepted(service) == FRAMES and rejects(service, "seq_gap") == 1


async def test_a_stream_token_keeps_a_sender_on_the_same_host_out(kit, start_service, push) -> None:
    """Same address, no CURVE: the token of the first frame binds the stream; 500 of 500 accepted."""
    service = await start_service(kit.FakeScorer(0.1), limits={"idle_timeout_s": 3.0})
    victim, attacker = push(service.ingest_endpoint), push(service.ingest_endpoint)
    forged = encode_frame(VICTIM, 100, np.zeros((0, 1), np.float32), 16_000, end=True, token="guess")
    events = await stream_with_one_foreign_frame(kit, service, victim, attacker, forged, "not_owner",
                                                 token="s3cret-0f-the-call")
    assert (events[-1].reason, events[-1].duration) == ("end", 10.0)
    assert accepted(service) == FRAMES and rejects(service, "not_owner") == 1


async def test_another_curve_key_cannot_end_the_stream(kit, start_service, zmq_context, tmp_path: Path) -> None:
    """CURVE on, any client admitted: the owner is the client's public key (ZAP User-Id)."""
    _, server_secret = zmq.auth.create_certificates(tmp_path, "server")
    keys = {who: zmq.auth.create_certificates(tmp_path, who)[1] for who in ("victim", "attacker")}
    service = await start_service(kit.FakeScorer(0.1), limits={"idle_timeout_s": 3.0},
                                  ingest={"curve_secret_key": Path(server_secret)})
    sockets = []
    for who in ("victim", "attacker"):
        sock = zmq_context.socket(zmq.PUSH)
        sock.linger = 1000
        make_client(sock, tmp_path / "server.key", keys[who])
        sock.connect(service.ingest_endpoint)
        sockets.append(sock)
    forged = encode_frame(VICTIM, 100, np.zeros((0, 1), np.float32), 16_000, end=True)
    events = await stream_with_one_foreign_frame(kit, service, *sockets, forged, "not_owner")
    assert (events[-1].reason, events[-1].duration) == ("end", 10.0)
    assert accepted(service) == FRAMES and rejects(service, "not_owner") == 1


async def test_256_ids_squatted_from_one_host_leave_room_for_a_new_real_stream(kit, start_service, push) -> None:
    """Measured before: 256 ids x one tiny frame (plus keep-alives) held every slot, and a new stream
    was refused without a word. The per-sender quota (128 by default) keeps the other half free."""
    service = await start_service(kit.FakeScorer(0.1))
    squatter = push(other_host(service.ingest_endpoint))
    for n in range(256):
        await squatter.send_multipart(encode_frame(f"squat-{n:03d}", 0, np.zeros((2, 1), np.float32), 16_000))
    await until(lambda: service.active_streams + rejects(service, "max_streams_per_sender") == 256)
    assert service.active_streams == 128
    listener = service.listen()
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("newcomer", kit.tone(5.0)))
    events = await kit.collect_until_end(listener, "newcomer", timeout=15)
    assert "raised" in [e.event for e in events] and events[-1].duration == 5.0


async def test_keepalives_alone_do_not_hold_a_slot_past_the_audio_timeout(kit, start_service, push) -> None:
    """4 slots, all held by streams that only send keep-alives (every 0.1 s, well inside the idle
    timeout): they end after ``audio_timeout_s`` and a new real stream gets a slot."""
    service = await start_service(kit.FakeScorer(0.1), limits={
        "max_streams": 4, "max_streams_per_sender": None, "audio_timeout_s": 1.0})
    listener = service.listen()
    squatter = push(service.ingest_endpoint)
    empty = np.zeros((0, 1), np.float32)

    async def keep_alive() -> None:
        for seq in range(10_000):
            for n in range(4):
                await squatter.send_multipart(encode_frame(f"squat-{n}", seq, empty, 16_000))
            await asyncio.sleep(0.1)

    task = asyncio.create_task(keep_alive())
    try:
        ends = []
        while len(ends) < 4:
            event = await listener.get(20)
            if event.event == "end":
                ends.append(event.reason)
        assert ends == ["audio_timeout"] * 4
        listener = service.listen()
        await kit.send_all(push(service.ingest_endpoint), kit.frames_of("newcomer", kit.tone(2.0)))
        events = await kit.collect_until_end(listener, "newcomer", timeout=15)
        assert events[-1].reason == "end" and events[-1].duration == 2.0
    finally:
        task.cancel()
    assert rejects(service, "audio_timeout") == 4


async def test_an_id_claimed_first_from_another_host_returns_to_its_real_sender_when_the_claim_lapses(
        kit, start_service, push) -> None:
    """The first frame wins, so a frame at 8 kHz sent before the real stream starts owns the id: the
    real sender's first 50 frames are refused (``not_owner``). Once the claim lapses (idle timeout),
    the real sender's later frames start the stream again mid-way: all 450 accepted, alert raised.
    Before, the rest of the real stream was refused for good (``stream_ended``: its seq was not 0)."""
    # An idle timeout long enough that the claim is still live when the 50 frames arrive.
    service = await start_service(kit.FakeScorer(0.1), limits={"idle_timeout_s": 3.0})
    victim, attacker = push(service.ingest_endpoint), push(other_host(service.ingest_endpoint))
    listener = service.listen()
    await attacker.send_multipart(encode_frame(VICTIM, 0, np.zeros((160, 1), np.float32), 8_000))
    await until(lambda: service.registry.get(VICTIM) is not None)
    frames = victim_frames(kit)
    await kit.send_all(victim, frames[:50])
    await until(lambda: rejects(service, "not_owner") == 50)
    claim = await kit.collect_until_end(listener, VICTIM)
    assert claim[-1].reason == "idle_timeout" and claim[-1].duration == 0.02
    await kit.send_all(victim, frames[50:])
    events = await kit.collect_until_end(listener, VICTIM, timeout=30)
    assert (events[-1].reason, events[-1].duration) == ("end", 9.0)
    assert "raised" in [e.event for e in events]
    assert accepted(service) == 1 + 450  # the claim's frame and every real frame after it
