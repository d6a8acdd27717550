"""Logs: one JSON object per line for log shippers (``log_format = "json"``), and ``LogThrottle``,
which keeps a flood of like events to a few lines."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def use_json_logs() -> None:
    """Switch every handler of the root logger to JSON lines."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())


class LogThrottle:
    """At most one line per key (a reason) per ``interval_s``, however many streams hit it: a flood of
    bad frames or dropped windows across thousands of streams costs a few lines a second, not one each.
    The lines held back are counted, and the next line of that key ends with ``(+N more)``; the
    Prometheus counters keep the exact totals."""

    MAX_KEYS = 1_024
    """Keys remembered; beyond it all are forgotten (a key that is not a reason must not grow memory)."""

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._state: dict[str, tuple[float, int]] = {}
        """key → (when its last line was logged, lines held back since)."""

    def log(self, level: int, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` was logged less than ``interval_s`` ago; True if logged."""
        now = self._clock()
        last, held = self._state.get(key, (float("-inf"), 0))
        if now - last < self.interval_s:
            self._state[key] = (last, held + 1)
            return False
        if held:
            message, args = message + " (+%d more)", (*args, held)
        if len(self._state) >= self.MAX_KEYS and key not in self._state:
            self._state.clear()
        self._state[key] = (now, 0)
        self.logger.log(level, message, *args)
        return True

    def warning(self, key: str, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, message, *args)
