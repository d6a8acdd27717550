"""The Python client against bare ZeroMQ sockets on loopback (the service side is tested elsewhere)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import zmq
import zmq.asyncio

from streamdet.client import Sender, Subscriber, iter_events, stream_id_for
from streamdet.client.sender import file_format
from streamdet.service.events import EndEvent, WindowEvent, encode_event
from streamdet.service.frames import STREAM_ID_PATTERN, parse_frame


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
