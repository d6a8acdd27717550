"""The batcher's scoring lanes: an in-process scorer (one that keeps the base ``Scorer.score``) has its
batches measured and scored in the batcher's own threads, one whole batch per lane."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from streamdet.manifest import InputContract
from streamdet.scoring.base import Scorer
from streamdet.service.batcher import Batcher, WindowJob
from streamdet.stream.windower import Window


class BlockingScorer(Scorer):
    """An in-process model whose ``score_batch`` blocks its thread until the test opens ``gate``;
    it records the thread of every call and the first sample (a code) of each window."""

    def __init__(self, p_bonafide: float = 0.2, fail: bool = False) -> None:
        self.contract, self.model_id = InputContract(), "blocking@0"
        self.p_bonafide, self.fail = p_bonafide, fail
        self.gate = threading.Event()
        self.threads: list[str] = []
        self.started: list[list[float]] = []
        self._lock = threading.Lock()

    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        with self._lock:
            self.threads.append(threading.current_thread().name)
            self.started.append([float(w[0]) for w in windows])
        if not self.gate.wait(10):
            raise TimeoutError("the test never opened the gate")
        if self.fail:
            raise RuntimeError("the model broke")
        return np.full(len(windows), self.p_bonafide, dtype=np.float32)


class Recorder:
    def __init__(self) -> None:
        self.results: list[tuple[str, int, float, float | None]] = []
        self.drops: list[tuple[str, int, str]] = []
        self.measured_in: list[str] = []

    def on_result(self, job: WindowJob, p: float) -> None:
        self.results.append((job.key, job.window.index, p, job.speech))

    def on_drop(self, job: WindowJob, reason: str) -> None:
        self.drops.append((job.key, job.window.index, reason))

    def measure(self, batch: list[WindowJob]) -> None:
        self.measured_in.append(threading.current_thread().name)
        for job in batch:
            job.speech = 0.5


def coded_job(key: str, index: int, code: float) -> WindowJob:
    return WindowJob(key, Window(index, index, index + 1, np.full(64600, code, np.float32)), arrival=0.0)


async def until(condition, timeout_s: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout_s)


def lane_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("streamdet-scoring")]


async def test_measure_and_model_run_in_the_same_lane_thread_off_the_event_loop() -> None:
    scorer, rec = BlockingScorer(), Recorder()
    batcher = Batcher(scorer, rec.on_result, rec.on_drop, max_batch=2, max_wait_s=0.0, measure=rec.measure)
    scorer.gate.set()
    batcher.start()
    batcher.submit(coded_job("a", 0, 0.0))
    batcher.submit(coded_job("b", 0, 1.0))
    await until(lambda: len(rec.results) == 2)
    assert rec.measured_in == scorer.threads and scorer.threads[0].startswith("streamdet-scoring")
    assert {speech for *_, speech in rec.results} == {0.5}  # measured before the results were handed on
    await batcher.close()


async def test_lanes_score_batches_at_once_and_one_more_waits_formed() -> None:
    # Two lanes, three batches in flight: two batches of distinct streams are in the model together,
    # a third is formed and handed over, the fourth stream's window still waits in its queue.
    scorer, rec = BlockingScorer(), Recorder()
    batcher = Batcher(scorer, rec.on_result, rec.on_drop, max_batch=1, max_wait_s=0.0, lanes=2, max_in_flight=3)
    batcher.start()
    for code, key in enumerate("abcd"):
        batcher.submit(coded_job(key, 0, float(code)))
    await until(lambda: len(scorer.started) == 2)
    await asyncio.sleep(0.1)
    assert len(scorer.started) == 2 and len(set(scorer.threads)) == 2  # both lanes busy, each its own batch
    assert batcher.pending == 1  # a, b in lanes; c formed and waiting for a lane; d queued
    scorer.gate.set()
    await until(lambda: len(rec.results) == 4)
    assert sorted(key for key, *_ in rec.results) == list("abcd") and rec.drops == []
    await batcher.close()


async def test_a_model_error_in_a_lane_drops_that_batch_and_the_lanes_go_on() -> None:
    scorer, rec = BlockingScorer(fail=True), Recorder()
    batcher = Batcher(scorer, rec.on_result, rec.on_drop, max_batch=2, max_wait_s=0.0, lanes=2, max_in_flight=3)
    scorer.gate.set()
    batcher.start()
    batcher.submit(coded_job("a", 0, 0.0))
    await until(lambda: len(rec.drops) == 1)
    assert rec.drops == [("a", 0, "error")]
    scorer.fail = False
    batcher.submit(coded_job("a", 1, 1.0))
    await until(lambda: len(rec.results) == 1)
    assert rec.results[0][:2] == ("a", 1)
    await batcher.close()


@pytest.mark.parametrize("ending", ["close", "abandon"])
async def test_close_and_abandon_stop_the_lane_threads(ending: str) -> None:
    before = set(lane_threads())
    scorer, rec = BlockingScorer(), Recorder()
    batcher = Batcher(scorer, rec.on_result, rec.on_drop, max_batch=1, max_wait_s=0.0, lanes=2, max_in_flight=3)
    batcher.start()
    batcher.submit(coded_job("a", 0, 0.0))
    await until(lambda: len(scorer.started) == 1)
    ours = set(lane_threads()) - before
    assert ours
    if ending == "close":
        scorer.gate.set()
        await asyncio.wait_for(batcher.close(), 5)
        assert [key for key, *_ in rec.results] == ["a"]
    else:
        await asyncio.wait_for(batcher.abandon(), 5)  # the held batch is given up on, not waited for
        assert rec.results == [] and rec.drops == []
        scorer.gate.set()  # the model call still in its thread returns, and nobody reads it
    await until(lambda: not any(thread.is_alive() for thread in ours))


def test_lanes_and_batches_in_flight_must_be_positive() -> None:
    for lanes, in_flight in ((0, 1), (1, 0)):
        with pytest.raises(ValueError):
            Batcher(BlockingScorer(), Recorder().on_result, Recorder().on_drop, lanes=lanes, max_in_flight=in_flight)
