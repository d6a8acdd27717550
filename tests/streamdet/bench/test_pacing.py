"""The pacing loop: every frame once, never before it is due, wake-ups on a tick grid (a fake clock)."""

from __future__ import annotations

import asyncio

import pytest

from streamdet.bench import pacing


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """``time.monotonic`` and ``asyncio.sleep`` of the pacing loop on a fake clock; ``clock[1:]``: the
    times it woke at."""
    now = [100.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        now.append(now[0])

    monkeypatch.setattr(pacing.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(pacing.asyncio, "sleep", sleep)
    return now


def _run(schedule: dict[int, list[float]], tick_s: float, clock: list[float]) -> list[tuple[int, int, float, float]]:
    """What the loop yields: (stream, frame, due, the fake time it was yielded at)."""
    async def run() -> list[tuple[int, int, float, float]]:
        return [(i, k, due, clock[0]) async for i, k, due in pacing.paced(schedule, tick_s)]

    return asyncio.run(run())


# Three streams of 20-ms frames starting 0.3 ms apart (off the 2-ms grid): nine distinct due times.
SCHEDULE = {i: [100.0001 + 0.0003 * i + 0.02 * (k + 1) for k in range(3)] for i in range(3)}


@pytest.mark.parametrize("tick_s", [0.0, 0.002, 0.005])
def test_every_frame_leaves_once_in_order_and_never_early(clock: list[float], tick_s: float):
    sent = _run(SCHEDULE, tick_s, clock)
    assert sorted((i, k) for i, k, _, _ in sent) == [(i, k) for i in range(3) for k in range(3)]
    assert [due for _, _, due, _ in sent] == sorted(due for times in SCHEDULE.values() for due in times)
    assert all(at >= due for _, _, due, at in sent)
    assert all(at - due <= tick_s + 1e-9 for _, _, due, at in sent)  # late by at most a tick


def test_frames_due_within_a_tick_leave_together(clock: list[float]):
    _run(SCHEDULE, 0.0, clock)
    exact = len(clock) - 1
    del clock[1:]
    clock[0] = 100.0
    _run(SCHEDULE, 0.002, clock)
    assert exact == 9 and len(clock) - 1 == 3  # one wake-up per frame period instead of one per frame
