"""``LogThrottle``: one line per key per interval, the rest counted into the next line."""

from __future__ import annotations

import logging

import pytest

from streamdet.service.logs import LogThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_1000_events_of_one_key_within_an_interval_log_one_line_and_the_next_says_plus_999(caplog) -> None:
    clock = Clock()
    throttle = LogThrottle(logging.getLogger("test.throttle"), interval_s=1.0, clock=clock)
    with caplog.at_level(logging.WARNING, "test.throttle"):
        logged = [throttle.warning("overload", "stream %s dropped", f"s{i}") for i in range(1_000)]
        clock.now += 1.0
        throttle.warning("overload", "stream %s dropped", "late")
    assert logged.count(True) == 1
    assert [r.getMessage() for r in caplog.records] == ["stream s0 dropped", "stream late dropped (+999 more)"]


def test_each_key_has_its_own_interval(caplog) -> None:
    clock = Clock()
    throttle = LogThrottle(logging.getLogger("test.throttle"), interval_s=1.0, clock=clock)
    with caplog.at_level(logging.WARNING, "test.throttle"):
        for reason in ("oversize", "bad_json", "oversize", "bad_json"):
            throttle.warning(reason, "rejected: %s", reason)
    assert [r.getMessage() for r in caplog.records] == ["rejected: oversize", "rejected: bad_json"]


@pytest.mark.parametrize("keys", [LogThrottle.MAX_KEYS * 3])
def test_keys_beyond_the_limit_are_forgotten_not_kept(keys: int) -> None:
    throttle = LogThrottle(logging.getLogger("test.throttle"), clock=Clock())
    for i in range(keys):
        throttle.warning(f"k{i}", "x")
    assert len(throttle._state) <= LogThrottle.MAX_KEYS
