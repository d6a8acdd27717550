"""The alert state machine: k of n to raise, m consecutive below to clear, no flapping."""

from __future__ import annotations

import pytest

from streamdet.stream.alerts import AlertStateMachine


def run(machine: AlertStateMachine, verdicts: str) -> list[str | None]:
    """verdicts: 'S' = spoof evidence, '.' = below threshold."""
    return [machine.update(v == "S") for v in verdicts]


def test_raises_on_k_of_n() -> None:
    assert run(AlertStateMachine(2, 3, 2), "S.S") == [None, None, "raised"]


def test_k_spread_wider_than_n_does_not_raise() -> None:
    assert run(AlertStateMachine(2, 3, 2), "S..S..S") == [None] * 7


def test_clears_after_m_consecutive_below() -> None:
    machine = AlertStateMachine(1, 1, 3)
    assert run(machine, "S..S...") == ["raised", None, None, None, None, None, "cleared"]
    assert not machine.raised


def test_no_flapping_on_old_evidence() -> None:
    # n = 5 would still hold the two S of the first raise: a fresh raise needs k fresh windows.
    machine = AlertStateMachine(2, 5, 2)
    assert run(machine, "SS") == [None, "raised"]
    assert run(machine, "..") == [None, "cleared"]
    assert run(machine, "S") == [None]
    assert run(machine, "S") == ["raised"]


def test_alternating_windows_hold_a_raised_alert() -> None:
    machine = AlertStateMachine(2, 3, 2)
    assert run(machine, "SS.S.S.S") == [None, "raised", None, None, None, None, None, None]
    assert machine.raised


@pytest.mark.parametrize("k,n,m", [(0, 3, 1), (4, 3, 1), (1, 1, 0)])
def test_invalid_parameters(k: int, n: int, m: int) -> None:
    with pytest.raises(ValueError):
        AlertStateMachine(k, n, m)


def test_gated_windows_neither_raise_nor_clear() -> None:
    machine = AlertStateMachine(2, 3, 2)
    assert [machine.update(True, gated=True) for _ in range(5)] == [None] * 5 and not machine.raised
    # S, three gated, S: the gated windows are not among "the last 3", so S-S raises.
    assert [machine.update(True), *(machine.update(False, gated=True) for _ in range(3)), machine.update(True)] \
        == [None, None, None, None, "raised"]
    assert [machine.update(False, gated=True) for _ in range(10)] == [None] * 10 and machine.raised
    assert [machine.update(False), machine.update(True, gated=True), machine.update(False)] == [None, None, "cleared"]
