"""The Python client against bare ZeroMQ sockets on loopback (the service side is tested elsewhere)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import zmq
import zmq.asyncio

from streamdet.client import Sender, Subscriber, iter_events, stream_id_for
from streamdet.client.sender import file_format
from streamdet.errors import ServerGoneError
from streamdet.service.events import EndEvent, Heartbeat, WindowEvent, encode_event
from streamdet.service.frames import STREAM_ID_PATTERN, encode_frame, parse_frame


@pytest.fixture
async def pull():
    context = zmq.asyncio.Context()
    socket = context.socket(zmq.PULL)
    socket.bind("tcp://127.0.0.1:*")
    yield socket
    context.destroy(linger=0)


async def receive_stream(socket: zmq.asyncio.Socket):
    frames = []
    while not frames or not frames[-1].end:
        frames.append(parse_frame(await asyncio.wait_for(socket.recv_multipart(), 10), 1 << 22))
    return frames


def test_stream_ids_from_file_names_are_valid() -> None:
    sid = stream_id_for("/x/my clip (final).wav")
    assert STREAM_ID_PATTERN.fullmatch(sid) and sid.startswith("my_clip__final_-")
    assert stream_id_for("a.wav") != stream_id_for("a.wav")


def test_file_format_keeps_16_bit_files_lossless(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(10), 8000, subtype="PCM_16")
    sf.write(tmp_path / "b.wav", np.zeros(10), 8000, subtype="FLOAT")
    assert (file_format(tmp_path / "a.wav"), file_format(tmp_path / "b.wav")) == ("s16le", "f32le")


async def test_send_file_frames_reassemble_the_file(pull, tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (22050, 2))
    sf.write(path, audio, 22050, subtype="PCM_16")
    seen = []
    async with Sender(pull.last_endpoint.decode()) as sender:
        result = await sender.send_file(path, "st", chunk_ms=20, on_frame=lambda *a: seen.append(a))
        frames = await receive_stream(pull)
    assert (result.stream_id, result.format, result.channels, result.frames) == ("st", "s16le", 2, 50)  # 441-frame chunks
    assert [f.seq for f in frames] == list(range(50)) and [s[1] for s in seen] == list(range(50))
    assert {(f.sample_rate, f.channels) for f in frames} == {(22050, 2)}
    decoded, _ = sf.read(path, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(np.concatenate([f.samples for f in frames]), decoded)


async def test_more_than_two_channels_are_mixed_down(pull) -> None:
    async with Sender(pull.last_endpoint.decode()) as sender:
        await sender.send_array("six", np.ones((800, 6), np.float32) * 0.25, 16000, fmt="s16le")
        frames = await receive_stream(pull)
    assert {(f.channels, f.format) for f in frames} == {(1, "f32le")}


async def test_empty_audio_sends_a_bare_end_marker(pull) -> None:
    async with Sender(pull.last_endpoint.decode()) as sender:
        await sender.send_array("nothing", np.zeros((0, 1), np.float32), 16000)
        (frame,) = await receive_stream(pull)
    assert frame.end and frame.samples.shape == (0, 1)


def window_event(stream_id: str, event: str = "score") -> WindowEvent:
    return WindowEvent(event, stream_id, 0, 0.0, 4.0375, 0.0, 0.9, 0.1, 0.5, 0.5, True, False, False, "m", 1.0)


async def test_subscriber_filters_and_decodes() -> None:
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:*")
    try:
        async with Subscriber(pub.last_endpoint.decode(), ["alert."]) as sub:
            await sub.wait_connected()
            pub.send_multipart(encode_event(window_event("a")))
            pub.send_multipart(encode_event(window_event("a", "raised")))
            event = await sub.recv(timeout=5)
        assert event == window_event("a", "raised")
    finally:
        pub.close(linger=0)
        context.term()


HEARTBEAT = [b"hb.", b'{"event": "heartbeat", "v": 1}']


async def test_subscriber_consumes_heartbeats_and_tells_quiet_from_gone() -> None:
    from streamdet.errors import ServerGoneError

    context = zmq.asyncio.Context()
    pub = context.socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:*")

    async def heartbeats() -> None:
        while True:
            await pub.send_multipart(HEARTBEAT)
            await asyncio.sleep(0.05)

    try:
        async with Subscriber(pub.last_endpoint.decode(), ["alert."]) as sub:
            await sub.wait_connected()
            with pytest.raises(ServerGoneError, match="no event or heartbeat for 0.3 s"):
                await sub.recv(timeout=0.3)  # nothing at all: gone
            beating = asyncio.create_task(heartbeats())
            with pytest.raises(TimeoutError) as quiet:
                await sub.recv(timeout=0.5)  # heartbeats but no event: quiet, not gone
            assert not isinstance(quiet.value, ServerGoneError)
            await pub.send_multipart(encode_event(window_event("a", "raised")))
            assert await sub.recv(idle_timeout=5) == window_event("a", "raised")  # heartbeats skipped
            beating.cancel()
            with pytest.raises(ServerGoneError, match="no event or heartbeat for 0.3 s"):
                await sub.recv(idle_timeout=0.3)
    finally:
        context.destroy(linger=0)


def test_iter_events_stops_after_timeout() -> None:
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:*")
    try:
        assert list(iter_events(pub.last_endpoint.decode(), timeout=0.2)) == []
    finally:
        pub.close(linger=0)
        context.term()


def test_end_events_decode_as_end_events() -> None:
    from streamdet.service.events import decode_event

    end = EndEvent("a", "end", 1.0, 1, 0, False, 0.0, "m")
    assert isinstance(decode_event(encode_event(end)[1]), EndEvent)


async def test_subscriber_reports_a_silent_server_as_gone() -> None:
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:*")  # a PUB socket that never sends: no event, no heartbeat
    try:
        async with Subscriber(pub.last_endpoint.decode(), ["alert."]) as sub:
            await sub.wait_connected()
            with pytest.raises(ServerGoneError) as caught:
                await sub.recv(timeout=0.2)
        assert isinstance(caught.value, TimeoutError) and sub.last_heard is None
    finally:
        pub.close(linger=0)
        context.term()


def test_iter_events_skips_heartbeats() -> None:
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:*")
    stop = threading.Event()

    def publish() -> None:  # until received: the subscription reaches the PUB socket at some point
        while not stop.wait(0.05):
            pub.send_multipart(encode_event(Heartbeat(wall_time=1.0, interval_s=2.0, model_id="m", active_streams=0)))
            pub.send_multipart(encode_event(window_event("a")))

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        events = iter_events(pub.last_endpoint.decode(), timeout=30)
        assert [next(events), next(events)] == [window_event("a")] * 2  # a heartbeat came between them
        events.close()
    finally:
        stop.set()
        thread.join()
        pub.close(linger=0)
        context.term()


async def test_encoded_frames_go_out_as_they_are_and_wait_when_the_queue_is_full(tmp_path) -> None:
    context = zmq.asyncio.Context()
    # Nobody there yet: the sender's queue (2 frames) fills up. An IPC path rather than a TCP port
    # that was bound and closed, which a reconnecting sender may be handed as its own source port
    # (TCP then connects it to itself) or another test may take: the likely cause of one CI run's
    # timeout, where the frames never arrived.
    endpoint = f"ipc://{tmp_path}/encoded.sock"
    messages = [encode_frame("enc", k, np.full(320, k / 100, np.float32), 16_000, end=k == 5, ts=1.5 + k)
                for k in range(6)]
    try:
        async with Sender(endpoint, send_hwm=2) as sender:
            async def send_all() -> None:
                for message in messages:
                    await sender.send_encoded(message)
            sending = asyncio.create_task(send_all())
            await asyncio.sleep(0.2)
            assert not sending.done()  # waiting for room, not dropping or raising
            pull = context.socket(zmq.PULL)
            pull.bind(endpoint)
            received = [await asyncio.wait_for(pull.recv_multipart(), 10) for _ in messages]
            await asyncio.wait_for(sending, 10)
        assert received == messages
    finally:
        context.destroy(linger=0)
