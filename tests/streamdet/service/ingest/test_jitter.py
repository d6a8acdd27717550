"""The jitter buffer: order restored, duplicates and late packets told apart, losses declared after
the latency, 16-bit wrap-around and sequence restarts."""

from __future__ import annotations

from collections import Counter

from streamdet.service.ingest.jitter import JitterBuffer


def buffer(latency_s: float = 0.06, **kwargs) -> tuple[JitterBuffer[int], Counter]:
    counts: Counter = Counter()
    return JitterBuffer(latency_s, on_count=lambda result, n: counts.update({result: n}), **kwargs), counts


def test_in_order_packets_pass_straight_through() -> None:
    jb, counts = buffer()
    assert [jb.push(s, s, 0.0) for s in (10, 11, 12)] == [[10], [11], [12]]
    assert counts == {"accepted": 3}


def test_reordered_packets_come_out_in_order() -> None:
    jb, counts = buffer()
    out = jb.push(1, 1, 0.0) + jb.push(3, 3, 0.01) + jb.push(2, 2, 0.02) + jb.push(4, 4, 0.03)
    assert out == [1, 2, 3, 4]
    assert counts == {"accepted": 3, "reordered": 1}


def test_duplicates_are_dropped_whether_held_or_already_released() -> None:
    jb, counts = buffer()
    out = jb.push(1, 1, 0.0) + jb.push(3, 3, 0.0) + jb.push(3, 3, 0.0) + jb.push(1, 1, 0.0)
    assert out == [1]
    assert counts["duplicate"] == 2 and jb.held == 1


def test_a_missing_packet_is_declared_lost_after_the_latency_and_a_late_one_dropped() -> None:
    jb, counts = buffer(latency_s=0.06)
    assert jb.push(1, 1, 0.00) == [1]
    assert jb.push(3, 3, 0.02) == []  # 2 is missing: wait
    assert jb.poll(0.05) == []
    assert jb.poll(0.08) == [3]  # 3 waited 60 ms: 2 is lost
    assert jb.push(2, 2, 0.09) == []
    assert counts == {"accepted": 2, "lost": 1, "late": 1}


def test_sequence_numbers_wrap_around() -> None:
    jb, counts = buffer()
    out = []
    for seq in (65533, 65534, 0, 65535, 1, 2):  # 65535 arrives after 0
        out += jb.push(seq, seq, 0.0)
    assert out == [65533, 65534, 65535, 0, 1, 2]
    assert counts == {"accepted": 5, "reordered": 1}


def test_too_many_held_packets_release_without_waiting() -> None:
    jb, counts = buffer(latency_s=10.0, max_packets=3)
    out = jb.push(1, 1, 0.0)
    for seq in (3, 4, 5, 6):
        out += jb.push(seq, seq, 0.0)
    assert out == [1, 3, 4, 5, 6] and counts["lost"] == 1


def test_a_stray_far_packet_is_dropped_but_a_confirmed_jump_is_a_restart() -> None:
    jb, counts = buffer(latency_s=0.0, max_dropout=100)
    out = jb.push(1, 1, 0.0) + jb.push(3, 3, 0.0)
    out += jb.push(9_000, 9_000, 0.0) + jb.push(4, 4, 0.0)  # a stray packet: dropped, the stream goes on
    assert out == [1, 3, 4] and counts["out_of_range"] == 1 and counts["lost"] == 1
    out = jb.push(40_000, 40_000, 0.0) + jb.push(40_001, 40_001, 0.0) + jb.push(40_002, 40_002, 0.0)
    assert out == [40_001, 40_002]  # the sender restarted at 40,000: confirmed by 40,001
    assert counts["resync"] == 1 and counts["out_of_range"] == 2


def test_flush_releases_everything_in_order() -> None:
    jb, counts = buffer(latency_s=10.0)
    jb.push(1, 1, 0.0)
    jb.push(4, 4, 0.0)
    jb.push(3, 3, 0.0)
    assert jb.flush() == [3, 4] and counts["lost"] == 1 and jb.held == 0
