"""A graceful shutdown that runs out of time (``limits.shutdown_timeout_s``) still closes every
stream: ``end`` with reason ``unscored`` and the count, ``ended`` if raised, and the metric.
(The ``streamdet serve`` process and its exit status: test_serve_shutdown_restart.py.)"""

from __future__ import annotations

import asyncio


async def test_a_0_3s_shutdown_of_6_streams_with_a_1s_scorer_ends_all_6_unscored_and_counts_them(
        start_service, kit, push) -> None:
    """6 streams x 6 s (3 windows each with the tail), p_spoof 0.9 with k = n = 1 so every stream
    is raised once a window is scored, a scorer taking 1 s per batch, 0.3 s to shut down: all 6
    ``end`` events (reason ``unscored``, windows + unscored = 3), ``ended`` for the raised ones,
    and ``streamdet_windows_unscored_total`` = the windows given up on. Before: no ``end`` at all."""
    service = await start_service(kit.FakeScorer(0.1, delay_s=1.0), limits={"shutdown_timeout_s": 0.3},
                                  alerts={"k": 1, "n": 1}, scoring={"max_batch": 2})
    streams = [f"s{i}" for i in range(6)]
    events = service.listen()
    sender = push(service.ingest_endpoint)
    for stream_id in streams:
        await kit.send_all(sender, kit.frames_of(stream_id, kit.tone(6.0), end=False))
    while sum(s["pending"] + s["windows"] for s in service.registry.snapshot()) < 2 * len(streams):
        await asyncio.sleep(0.02)  # until every stream's 2 regular windows are cut
    await service.stop()

    received = [event async for event in events]
    ends = {e.stream_id: e for e in received if e.event == "end"}
    assert sorted(ends) == streams
    assert {e.reason for e in ends.values()} == {"unscored"}
    assert all(e.windows + e.dropped + e.unscored == 3 and e.unscored >= 1 for e in ends.values())
    raised = {e.stream_id for e in received if e.event == "raised"}
    assert {e.stream_id for e in received if e.event == "ended"} == raised
    unscored = sum(e.unscored for e in ends.values())
    assert service.unscored_at_shutdown == unscored
    assert service.metrics.windows_unscored._value.get() == unscored
