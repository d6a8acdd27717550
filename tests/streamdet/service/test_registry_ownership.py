"""StreamRegistry's ownership, sequence-jump, per-sender quota and audio-timeout checks, without sockets."""

from __future__ import annotations

import numpy as np
import pytest

from streamdet.errors import StreamRejectedError
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.owner import StreamOwner
from streamdet.service.registry import StreamRegistry
from streamdet.stream.policy import StreamPolicy

ALICE = StreamOwner("addr:10.0.0.1")
ALICE_TOKEN = StreamOwner("addr:10.0.0.1", "alice-secret")
MALLORY = StreamOwner("addr:10.0.0.66")
CHUNK = np.zeros((320, 1), np.float32)
EMPTY = np.zeros((0, 1), np.float32)


class Events:
    def __init__(self) -> None:
        self.published: list = []

    def publish(self, event) -> None:
        self.published.append(event)


def registry(**limits) -> StreamRegistry:
    return StreamRegistry(StreamPolicy(), lambda job: None, Events(), ServiceMetrics(), model_id="test", **limits)


def refused(reason: str, call, *args, **kwargs) -> None:
    with pytest.raises(StreamRejectedError) as caught:
        call(*args, **kwargs)
    assert caught.value.reason == reason


def test_a_frame_of_another_owner_is_refused_and_changes_nothing() -> None:
    reg = registry()
    for seq in range(3):
        reg.push("call", CHUNK, 16_000, 1, seq=seq, owner=ALICE)
    refused("not_owner", reg.push, "call", CHUNK, 16_000, 1, seq=2**62, owner=MALLORY)
    refused("not_owner", reg.push, "call", EMPTY, 16_000, 1, seq=3, end=True, owner=MALLORY)
    refused("not_owner", reg.push, "call", CHUNK, 8_000, 1, seq=3, owner=MALLORY)
    session = reg.get("call")
    assert session is not None and session.last_seq == 2 and session.sample_rate == 16_000
    reg.push("call", CHUNK, 16_000, 1, seq=3, owner=ALICE)  # the owner goes on as if nothing happened


def test_a_token_narrows_the_owner_to_one_stream_of_a_sender() -> None:
    reg = registry()
    reg.push("call", CHUNK, 16_000, 1, seq=0, owner=ALICE_TOKEN)
    refused("not_owner", reg.push, "call", CHUNK, 16_000, 1, seq=1, owner=ALICE)  # same address, no token
    refused("not_owner", reg.push, "call", CHUNK, 16_000, 1, seq=1, owner=StreamOwner(ALICE.sender, "guess"))
    reg.push("call", CHUNK, 16_000, 1, seq=1, owner=ALICE_TOKEN)


def test_an_owned_stream_refuses_unowned_pushers_only_when_they_name_an_owner() -> None:
    """None skips the check (an ingest that cannot tell senders apart); any owner must match."""
    reg = registry()
    reg.push("radio", CHUNK, 16_000, 1)  # an owner-less stream
    refused("not_owner", reg.push, "radio", CHUNK, 16_000, 1, owner=MALLORY)
    reg.push("radio", CHUNK, 16_000, 1)


def test_end_with_an_owner_ends_only_that_owners_stream() -> None:
    reg = registry()
    reg.push("call", CHUNK, 16_000, 1, owner=ALICE)
    reg.end("call", "closed", owner=MALLORY)  # e.g. another connection with the same id closing
    assert reg.get("call") is not None
    reg.end("call", "end", owner=ALICE)
    assert reg.get("call") is None


def test_a_seq_jump_beyond_max_seq_gap_is_refused_and_a_smaller_one_accepted() -> None:
    reg = registry(max_seq_gap=10_000)
    reg.push("call", CHUNK, 16_000, 1, seq=0, owner=ALICE)
    refused("seq_gap", reg.push, "call", CHUNK, 16_000, 1, seq=2**62, owner=ALICE)
    refused("seq_gap", reg.push, "call", CHUNK, 16_000, 1, seq=10_001, owner=ALICE)
    reg.push("call", CHUNK, 16_000, 1, seq=10_000, owner=ALICE)  # 9,999 frames lost: still the stream
    assert reg.get("call").last_seq == 10_000


def test_the_quota_counts_streams_per_sender_not_per_token() -> None:
    reg = registry(max_streams=10, max_streams_per_sender=3)
    for n in range(3):
        reg.push(f"m{n}", CHUNK, 16_000, 1, owner=StreamOwner(MALLORY.sender, f"token-{n}"))
    refused("max_streams_per_sender", reg.push, "m3", CHUNK, 16_000, 1, owner=StreamOwner(MALLORY.sender, "t"))
    reg.push("a0", CHUNK, 16_000, 1, owner=ALICE)  # another sender still gets a slot
    reg.end("m0")
    reg.push("m3", CHUNK, 16_000, 1, owner=MALLORY)  # a slot freed is a slot to use
    assert reg.active == 4


def test_keepalives_do_not_reset_the_audio_timeout_but_samples_do() -> None:
    reg = registry(idle_timeout_s=10.0, audio_timeout_s=5.0)
    reg.push("keepalive", CHUNK, 16_000, 1, seq=0, arrival=100.0)
    reg.push("talking", CHUNK, 16_000, 1, seq=0, arrival=100.0)
    for second in range(1, 7):
        reg.push("keepalive", EMPTY, 16_000, 1, seq=second, arrival=100.0 + second)
        reg.push("talking", CHUNK, 16_000, 1, seq=second, arrival=100.0 + second)
    assert reg.end_idle(now=104.5) == []
    assert reg.end_idle(now=106.5) == ["keepalive"]  # 6.5 s since its last samples
    assert reg.get("talking") is not None


def test_an_ended_stream_refuses_only_its_own_owners_late_frames() -> None:
    reg = registry()
    reg.push("call", CHUNK, 8_000, 1, seq=0, owner=MALLORY)  # a claim before the real sender
    reg.end("call", "idle_timeout")
    refused("stream_ended", reg.push, "call", CHUNK, 8_000, 1, seq=1, owner=MALLORY)  # late, and its own
    reg.push("call", CHUNK, 16_000, 1, seq=50, owner=ALICE)  # another sender: a new stream, mid-way
    assert reg.get("call").owner == ALICE and reg.get("call").sample_rate == 16_000
