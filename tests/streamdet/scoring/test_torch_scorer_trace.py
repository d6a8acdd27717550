"""TorchScorer's traced CPU path: the same scores as eager mode (within 1e-6), one trace per batch
size, the CPU default for traceable architectures only, and a forward pass that runs without the GIL."""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from streamdet.bench.models import random_countermeasure
from streamdet.bench.reference import comparison_windows
from streamdet.cm import Countermeasure, load_cm
from streamdet.errors import ConfigError
from streamdet.pretrained import default_cm_dir
from streamdet.scoring.torch_scorer import TorchScorer

BATCH_SIZES = (1, 2, 3, 5)
EXACT = 1e-6
"""Traced and eager run the same operators on the same weights: only summation order may differ."""


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return comparison_windows(max(BATCH_SIZES))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Intra-op threads off: all of a forward pass runs in the calling thread (its CPU clock sees it all)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shipped_cm() -> Countermeasure:
    return load_cm(default_cm_dir(), device=torch.device("cpu"))


CMS: dict[str, Callable[[], Countermeasure]] = {
    "shipped": shipped_cm,
    "random-mel_lcnn": lambda: random_countermeasure("mel_lcnn"),
    "random-logmel_cnn": lambda: random_countermeasure("logmel_cnn", seed=1),
}


@pytest.mark.parametrize("name", list(CMS))
def test_traced_scores_equal_eager_scores(name: str, windows: np.ndarray):
    cm = CMS[name]()
    traced = TorchScorer.from_cm(cm, max_batch=max(BATCH_SIZES))
    eager = TorchScorer.from_cm(cm, max_batch=max(BATCH_SIZES), trace=False)  # same weights, same layout
    assert traced.trace and not eager.trace
    for size in BATCH_SIZES:
        expected = eager.score_batch(windows[:size])
        for _ in range(3):  # TorchScript's executor profiles the first calls and optimises the graph after
            np.testing.assert_allclose(traced.score_batch(windows[:size]), expected, rtol=0, atol=EXACT)
    assert sorted(traced._traced) == list(BATCH_SIZES) and not eager._traced


def test_workers_trace_each_part_size(windows: np.ndarray):
    cm = random_countermeasure("mel_lcnn")
    expected = TorchScorer.from_cm(cm, trace=False).score_batch(windows)
    before = torch.get_num_threads()
    try:
        scorer = TorchScorer.from_cm(cm, max_batch=4, workers=2, threads=1)
        assert scorer.trace
        np.testing.assert_allclose(scorer.score_batch(windows), expected, rtol=0, atol=EXACT)  # 2 + 2, then 1
        np.testing.assert_allclose(scorer.score_batch(windows[:3]), expected[:3], rtol=0, atol=EXACT)  # 2 + 1
        assert sorted(scorer._traced) == [1, 2]
        scorer.close()
    finally:
        torch.set_num_threads(before)


def test_one_trace_per_batch_size(windows: np.ndarray, monkeypatch: pytest.MonkeyPatch):
    traced_sizes: list[int] = []
    real_trace = torch.jit.trace

    def counting_trace(module, example, **kwargs):
        traced_sizes.append(len(example))
        return real_trace(module, example, **kwargs)

    monkeypatch.setattr(torch.jit, "trace", counting_trace)
    scorer = TorchScorer.from_cm(random_countermeasure("mel_lcnn"), max_batch=2)
    assert traced_sizes == []  # lazily, on first use
    for size in (2, 2, 1, 5, 3, 1):  # 5 and 3 are scored as chunks of 2 and 1
        scorer.score_batch(windows[:size])
    assert sorted(traced_sizes) == [1, 2]


def test_auto_traces_on_cpu_only_where_the_architecture_allows(tiny_xlsr_dir: Path):
    assert TorchScorer.from_cm(random_countermeasure("logmel_cnn")).trace
    assert not TorchScorer.from_cm(random_countermeasure("mel_lcnn"), trace=False).trace
    w2v2 = random_countermeasure("w2v2_lcnn", w2v2_source=str(tiny_xlsr_dir))
    assert not TorchScorer.from_cm(w2v2).trace
    with pytest.raises(ConfigError, match="w2v2_lcnn CMs are not marked traceable"):
        TorchScorer.from_cm(w2v2, trace=True)


def hold_the_gil_while(forward: Callable[[], object], enter_ns: int, target_ns: int,
                       hold_s: float) -> tuple[int, int]:
    """Run ``forward`` in another thread; once that thread's CPU time reaches ``enter_ns`` (well into
    the forward pass), take the GIL and keep it until the thread's CPU time reaches ``target_ns`` or
    ``hold_s`` passes. Returns its CPU time (since it started) when the hold began and when it ended.
    CPU time, not wall time: a thread starved by other processes just takes longer.

    An eager forward re-takes the GIL after every operator, so it stops within one; a traced one runs
    to its end."""
    usleep = ctypes.PyDLL(None).usleep  # a PyDLL call keeps the GIL while it sleeps
    started = threading.Event()
    start_ns: list[int] = []

    def run() -> None:
        with torch.inference_mode():
            start_ns.append(time.thread_time_ns())
            started.set()
            forward()

    thread = threading.Thread(target=run)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(600.0)  # so that the waiting thread does not ask this one to drop the GIL
    try:
        thread.start()
        started.wait()
        clock = time.pthread_getcpuclockid(thread.ident)
        # Sleeping releases the GIL: the thread gets into the forward pass (it may release the GIL
        # briefly on its way there, and a hold taken then would stop it before the traced part).
        while time.clock_gettime_ns(clock) - start_ns[0] < enter_ns and thread.is_alive():
            time.sleep(0.0002)
        began = time.clock_gettime_ns(clock) - start_ns[0]
        deadline = time.monotonic() + hold_s
        while time.clock_gettime_ns(clock) - start_ns[0] < target_ns and time.monotonic() < deadline:
            usleep(2000)
        ended = time.clock_gettime_ns(clock) - start_ns[0]
    finally:
        sys.setswitchinterval(interval)
    thread.join()
    return began, ended


def cpu_ns_of(forward: Callable[[], object]) -> int:
    """The least CPU time of a few forward passes in this thread, after a warm-up (the trace and
    oneDNN's kernels are built on first use)."""
    with torch.inference_mode():
        forward()
        times = []
        for _ in range(3):
            begin = time.thread_time_ns()
            forward()
            times.append(time.thread_time_ns() - begin)
    return min(times)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread CPU clocks and libc usleep")
def test_traced_forward_runs_while_another_thread_holds_the_gil(windows: np.ndarray, one_thread: None):
    cm = random_countermeasure("mel_lcnn")
    x = torch.from_numpy(windows[:2])
    traced = TorchScorer.from_cm(cm)
    eager = TorchScorer.from_cm(cm, trace=False)
    for scorer, gets_through in ((traced, True), (eager, False)):
        def forward(scorer: TorchScorer = scorer) -> object:
            return scorer._forward(x)

        whole = cpu_ns_of(forward)
        target = whole * 8 // 10
        # Traced: wait as long as a loaded machine may need. Eager (the control: the test can fail): it
        # gets at most one more operator (under a third of the pass) however long the hold.
        for _attempt in range(5):
            began, ended = hold_the_gil_while(forward, whole // 20, target, 60.0 if gets_through else 1.0)
            if began < whole // 4:  # the hold began early in the pass, so its outcome tells
                break
        else:
            pytest.skip("this thread took the GIL too late in every pass (machine overloaded)")
        assert (ended >= target) == gets_through, (scorer.trace, began, ended, whole)
