"""The batcher. Its scorer here is the fake Scorer subclass of conftest (a test double of the
model, not of ZeroMQ): these tests are about batching, waiting and dropping, not about scores."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from streamdet.service.batcher import OVER_BUDGET, OVER_LATENCY, Batcher, WindowJob
from streamdet.stream.windower import Window

WINDOW_BYTES = 64_600 * 4


def job(key: str, index: int, arrival: float = 0.0) -> WindowJob:
    return WindowJob(key, Window(index, index, index + 1, np.zeros(64600, np.float32)), arrival=arrival)


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


# --- shedding: the global budget and the latency target (synchronous: submit and shed_stale never wait)


def test_over_the_4_window_budget_the_stream_with_most_pending_loses_its_oldest(kit) -> None:
    rec = Recorder()
    batcher = Batcher(kit.FakeScorer(), rec.on_result, rec.on_drop, max_pending_windows=4)
    for i in range(5):
        batcher.submit(job("a", i))  # the 5th is one over: "a"'s oldest goes
    batcher.submit(job("b", 0))  # "b" is within its share: "a" (4 waiting) pays again
    assert rec.drops == [("a", 0, OVER_BUDGET), ("a", 1, OVER_BUDGET)]
    assert batcher.pending == 4 and batcher.pending_bytes == 4 * WINDOW_BYTES
    assert batcher.overloaded() == OVER_BUDGET  # at the budget: no room for a new stream


def test_the_budget_never_sheds_a_streams_only_window(kit) -> None:
    # Six streams of one window each over a budget of 4: every stream keeps its newest, so nothing
    # is shed, and the batcher says it is over budget (the registry then refuses new streams).
    rec = Recorder()
    batcher = Batcher(kit.FakeScorer(), rec.on_result, rec.on_drop, max_pending_windows=4)
    for key in "abcdef":
        batcher.submit(job(key, 0))
    assert rec.drops == [] and batcher.pending == 6
    assert batcher.overloaded() == OVER_BUDGET
    batcher.submit(job("a", 1))  # but a stream with two waiting loses its older one
    assert rec.drops == [("a", 0, OVER_BUDGET)]


def test_the_byte_budget_of_3_windows_sheds_like_the_window_budget(kit) -> None:
    rec = Recorder()
    batcher = Batcher(kit.FakeScorer(), rec.on_result, rec.on_drop, max_pending_bytes=3 * WINDOW_BYTES)
    batcher.submit(job("a", 0))
    batcher.submit(job("a", 1))
    assert batcher.overloaded() is None
    batcher.submit(job("b", 0))
    assert batcher.overloaded() == OVER_BUDGET and rec.drops == []
    batcher.submit(job("b", 1))  # a tie (2 and 2): one of them loses its oldest
    assert len(rec.drops) == 1 and rec.drops[0][1:] == (0, OVER_BUDGET)
    assert batcher.pending_bytes == 3 * WINDOW_BYTES


def test_windows_older_than_the_2s_target_are_shed_except_each_streams_newest(kit) -> None:
    rec = Recorder()
    batcher = Batcher(kit.FakeScorer(), rec.on_result, rec.on_drop, max_latency_s=2.0)
    for i in range(4):
        batcher.submit(job("a", i, arrival=float(i)))  # arrived at 0, 1, 2, 3 s
    batcher.submit(job("b", 0, arrival=0.0))  # b's only window: never shed, however old
    assert batcher.overloaded(now=1.5) is None
    assert batcher.shed_stale(now=3.5) == 2  # 3.5 and 2.5 s old; the one of 1.5 s stays
    assert rec.drops == [("a", 0, OVER_LATENCY), ("a", 1, OVER_LATENCY)]
    assert batcher.pending == 3
    assert batcher.overloaded(now=3.5) == OVER_LATENCY  # b's window is 3.5 s old


async def test_after_shedding_the_batcher_stays_overloaded_for_the_target_then_recovers(kit) -> None:
    rec = Recorder()
    batcher = Batcher(kit.FakeScorer(), rec.on_result, rec.on_drop, max_latency_s=2.0, max_wait_s=0.0)
    batcher.submit(job("a", 0, arrival=0.0))
    batcher.submit(job("a", 1, arrival=10.0))
    assert batcher.shed_stale(now=10.0) == 1
    batcher.start()
    await batcher.close()  # scores what is left: nothing waits now
    assert [i for _, i, _ in rec.results] == [1]
    assert batcher.overloaded(now=11.0) == OVER_LATENCY  # shed 1 s ago: not back yet (no flicker)
    assert batcher.overloaded(now=12.5) is None


async def test_a_slow_scorer_falling_behind_scores_each_streams_newest_windows(kit) -> None:
    # 0.2 s per window, windows of "a" every 0.05 s: without a target the queue would grow (up to
    # its per-stream cap) and scores fall further behind; with a 0.3 s target the stale ones go.
    scorer, rec = kit.FakeScorer(delay_s=0.2), Recorder()
    batcher = Batcher(scorer, rec.on_result, rec.on_drop, max_batch=1, max_wait_s=0.0,
                      max_pending_per_stream=1_000, max_latency_s=0.3)
    batcher.start()
    for i in range(20):
        batcher.submit(job("a", i, arrival=time.monotonic()))
        await asyncio.sleep(0.05)
    await batcher.close()
    shed = [i for _, i, reason in rec.drops if reason == OVER_LATENCY]
    scored = [i for _, i, _ in rec.results]
    assert shed and sorted(shed + scored) == list(range(20)) and scored[-1] == 19
    assert scored == sorted(scored)  # in order within the stream


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.005)


class HeldScorer:
    """Wraps the fake scorer: each batch waits until the test releases it, and records the first
    sample of every window it got (the tests put a window's code there)."""

    def __init__(self, kit) -> None:
        self.inner = kit.FakeScorer()
        self.contract, self.model_id, self.max_batch = self.inner.contract, "held@0", 64
        self.started: list[list[float]] = []
        self.release = asyncio.Event()

    async def score(self, windows: np.ndarray) -> np.ndarray:
        self.started.append([float(w[0]) for w in windows])
        await self.release.wait()
        return self.inner.score_batch(windows)


def coded_job(key: str, index: int, code: float) -> WindowJob:
    return WindowJob(key, Window(index, index, index + 1, np.full(64600, code, np.float32)), arrival=0.0)


async def test_with_two_in_flight_the_next_batch_is_scored_while_the_first_is(kit) -> None:
    for in_flight, expected_started in ((1, 1), (2, 2)):
        scorer, rec = HeldScorer(kit), Recorder()
        batcher = Batcher(scorer, rec.on_result, rec.on_drop, max_batch=2, max_wait_s=0.0, max_in_flight=in_flight)
        batcher.start()
        for code, key in enumerate("abcdef"):
            batcher.submit(coded_job(key, 0, code))
        await asyncio.sleep(0.1)
        assert len(scorer.started) == expected_started and rec.results == []
        scorer.release.set()
        await asyncio.wait_for(_until(lambda rec=rec: len(rec.results) == 6), 5)
        assert sorted(key for key, _, _ in rec.results) == list("abcdef") and rec.drops == []
        await batcher.close()


async def test_a_stream_is_never_in_two_batches_in_flight_so_its_results_stay_in_order(kit) -> None:
    scorer, rec = HeldScorer(kit), Recorder()
    batcher = Batcher(scorer, rec.on_result, rec.on_drop, max_batch=2, max_wait_s=0.0, max_in_flight=2)
    batcher.start()
    for index in range(4):
        batcher.submit(coded_job("a", index, float(index)))  # one stream only
    await asyncio.sleep(0.1)
    assert scorer.started == [[0.0, 1.0]]  # its next windows wait for this batch, not a second thread
    scorer.release.set()
    await asyncio.wait_for(_until(lambda: len(rec.results) == 4), 5)
    assert [index for _, index, _ in rec.results] == [0, 1, 2, 3]
    assert scorer.started == [[0.0, 1.0], [2.0, 3.0]]
    await batcher.close()


async def two_batches_held_in_flight(kit) -> tuple[HeldScorer, Recorder, Batcher]:
    """A batcher scoring streams "a" and "b" in two batches at once, both held until released."""
    scorer, rec = HeldScorer(kit), Recorder()
    batcher = Batcher(scorer, rec.on_result, rec.on_drop, max_batch=1, max_wait_s=0.0, max_in_flight=2)
    batcher.start()
    batcher.submit(coded_job("a", 0, 0.0))
    batcher.submit(coded_job("b", 0, 1.0))
    await asyncio.wait_for(_until(lambda: len(scorer.started) == 2), 5)
    return scorer, rec, batcher


async def test_close_waits_for_every_batch_in_flight_and_abandon_cancels_them(kit) -> None:
    scorer, rec, batcher = await two_batches_held_in_flight(kit)
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0.05)
    assert not closing.done()
    scorer.release.set()
    await asyncio.wait_for(closing, 5)
    assert sorted(key for key, _, _ in rec.results) == ["a", "b"]

    _, rec, batcher = await two_batches_held_in_flight(kit)
    await asyncio.wait_for(batcher.abandon(), 5)  # never released: both batches are cancelled
    assert rec.results == [] and rec.drops == []
