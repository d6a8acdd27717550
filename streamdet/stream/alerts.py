"""The per-stream alert state machine: k-of-n to raise, m consecutive below to clear.

Windows overlap (4 s windows every second), so one loud artefact shows up in several of them;
requiring k of the last n keeps a single odd window from raising an alert, and requiring m in a row
below keeps a raised alert from blinking off. The history is forgotten at every transition, so a
fresh raise needs k fresh windows and a fresh clear m fresh ones (no flapping on old evidence).
A gated window (too little speech, ``StreamPolicy.is_gated``) is not fed at all: "the last n" and
"m in a row" count speech windows only.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

Transition = Literal["raised", "cleared"]


class AlertStateMachine:
    def __init__(self, k: int, n: int, m: int) -> None:
        if not (1 <= k <= n) or m < 1:
            raise ValueError(f"need 1 <= k <= n and m >= 1, got k={k} n={n} m={m}")
        self.k, self.n, self.m = k, n, m
        self.raised = False
        self._recent: deque[bool] = deque(maxlen=n)
        self._below_run = 0

    def update(self, spoof: bool, gated: bool = False) -> Transition | None:
        """Feed one window's verdict (True = spoof evidence); returns a transition if one happened.
        A ``gated`` window changes nothing."""
        if gated:
            return None
        if not self.raised:
            self._recent.append(spoof)
            if sum(self._recent) >= self.k:
                self.raised = True
                self._recent.clear()
                self._below_run = 0
                return "raised"
            return None
        self._below_run = 0 if spoof else self._below_run + 1
        if self._below_run >= self.m:
            self.raised = False
            self._below_run = 0
            self._recent.clear()
            return "cleared"
        return None
