"""The batcher. Its scorer here is the fake Scorer subclass of conftest (a test double of the
model, not of ZeroMQ): these tests are about batching, waiting and dropping, not about scores."""

from __future__ import annotations

import asyncio

import numpy as np

from streamdet.service.batcher import Batcher, WindowJob
from streamdet.stream.windower import Window


def job(key: str, index: int) -> WindowJob:
    return WindowJob(key, Window(index, index, index + 1, np.zeros(64600, np.float32)), arrival=0.0)


class Recorder:
    def __init__(self) -> None:
        self.results: list[tuple[str, int, float]] = []
        self.drops: list[tuple[str, int, str]] = []
        self.done = asyncio.Event()

    def on_result(self, job: WindowJob, p: float) -> None:
        self.results.append((job.key, job.window.index, p))

    def on_drop(self, job: WindowJob, reason: str) -> None:
        self.drops.append((job.key, job.window.index, reason))


async def test_full_batch_goes_without_waiting(kit) -> None:
    scorer, rec = kit.FakeScorer(), Recorder()
    batcher = Batcher(scorer, rec.on_result, rec.on_drop, max_batch=4, max_wait_s=60.0)
    batcher.start()
    for i in range(4):
        batcher.submit(job("a", i))
    await asyncio.wait_for(_until(lambda: len(rec.results) == 4), 5)  # long before max_wait
    assert scorer.batches == [4]
    await batcher.close()


async def test_partial_batch_goes_after_max_wait(kit) -> None:
    scorer, rec = kit.FakeScorer(), Recorder()
    batcher = Batcher(scorer, rec.on_result, rec.on_drop, max_batch=8, max_wait_s=0.05)
    batcher.start()
    batcher.submit(job("a", 0))
    batcher.submit(job("b", 0))
    await asyncio.wait_for(_until(lambda: len(rec.results) == 2), 5)
    assert scorer.batches == [2]
    await batcher.close()


async def test_batches_are_capped_and_round_robin(kit) -> None:
    scorer, rec = kit.FakeScorer(), Recorder()
    batcher = Batcher(scorer, rec.on_result, rec.on_drop, max_batch=3, max_wait_s=0.0,
                      max_pending_per_stream=10)
    for i in range(4):
        batcher.submit(job("a", i))
    batcher.submit(job("b", 0))
    batcher.start()
    await batcher.close()
    assert scorer.batches == [3, 2]
    assert [(k, i) for k, i, _ in rec.results] == [("a", 0), ("b", 0), ("a", 1), ("a", 2), ("a", 3)]


async def test_overload_drops_the_oldest_of_that_stream_only(kit) -> None:
    # A slow model: while it scores one batch, stream "a" submits far more than its queue holds.
    scorer, rec = kit.FakeScorer(delay_s=0.2), Recorder()
    batcher = Batcher(scorer, rec.on_result, rec.on_drop, max_batch=1, max_wait_s=0.0,
                      max_pending_per_stream=2)
    batcher.start()
    batcher.submit(job("a", 0))
    await asyncio.sleep(0.05)  # window 0 is being scored now
    for i in range(1, 6):
        batcher.submit(job("a", i))  # ingest never waits
    batcher.submit(job("b", 0))
    assert batcher.pending == 3
    await batcher.close()
    assert rec.drops == [("a", 1, "overload"), ("a", 2, "overload"), ("a", 3, "overload")]
    assert sorted((k, i) for k, i, _ in rec.results) == [("a", 0), ("a", 4), ("a", 5), ("b", 0)]


async def test_scorer_failure_drops_the_batch_and_goes_on(kit) -> None:
    class Failing(kit.FakeScorer):
        def score_batch(self, windows: np.ndarray) -> np.ndarray:
            if not self.batches:
                self.batches.append(-1)
                raise RuntimeError("model exploded")
            return super().score_batch(windows)

    rec = Recorder()
    batcher = Batcher(Failing(), rec.on_result, rec.on_drop, max_batch=2, max_wait_s=0.0)
    batcher.submit(job("a", 0))
    batcher.start()
    await asyncio.wait_for(_until(lambda: len(rec.drops) == 1), 5)
    batcher.submit(job("a", 1))
    await batcher.close()
    assert rec.drops == [("a", 0, "error")] and [i for _, i, _ in rec.results] == [1]


async def test_close_scores_everything_queued(kit) -> None:
    scorer, rec = kit.FakeScorer(), Recorder()
    batcher = Batcher(scorer, rec.on_result, rec.on_drop, max_batch=2, max_wait_s=60.0)
    batcher.start()
    for i in range(5):
        batcher.submit(job("a", i))
    await batcher.close()
    assert [i for _, i, _ in rec.results] == [0, 1, 2, 3, 4]


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.005)
