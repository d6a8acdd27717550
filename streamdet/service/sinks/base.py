"""What the Redis and webhook sinks share: an in-memory hand-off, the persistent outbox, one task.

``deliver`` (on the event loop) only appends to a list and wakes the task. The task moves what was
handed over into the outbox (SQLite, in a thread), then calls the sink's ``_send_pending``, which
delivers what it can and says how long to sleep when it cannot (backoff, or nothing due yet). A new
event wakes the task early. ``close`` gives the task ``close_timeout_s`` to deliver what is pending,
then stops it; what was not delivered stays in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sqlite3
from dataclasses import asdict
from pathlib import Path

from streamdet.errors import ConfigError
from streamdet.service.events import Event
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.sinks.outbox import Outbox

log = logging.getLogger(__name__)

UNEXPECTED_ERROR_WAIT_S = 1.0


def backoff_delay(attempts: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter: about ``base_s * 2**(attempts-1)``, capped at ``max_s``, and
    drawn between half and all of it, so that many nodes do not retry in step."""
    delay = min(max_s, base_s * 2 ** max(0, attempts - 1))
    return delay * (0.5 + random.random() / 2)


class OutboxSink:
    """Base of a sink with a persistent outbox; subclasses set ``name`` and implement ``_send_pending``."""

    name: str
    close_timeout_s = 3.0

    def __init__(self, name: str, outbox_path: Path, metrics: ServiceMetrics, max_rows: int = 1_000_000,
                 node: str = "") -> None:
        self.name = name
        # Rows are owned by node and sink: two nodes pointed at one outbox file keep apart.
        self._owner = f"{node}/{name}"
        self._outbox_path = Path(outbox_path)
        self._max_rows = max_rows
        self._metrics = metrics
        self._handed: list[Event] = []
        self._seen_through = 0
        """The highest journal ``seq`` handed to ``deliver``, taken or filtered out."""
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.outbox: Outbox | None = None

    # --- the publisher's side --------------------------------------------------------------------

    def accepts(self, event: Event) -> bool:
        return True

    def deliver(self, events: list[Event]) -> None:
        if self._closing or not events:
            return
        self._seen_through = max(self._seen_through, max(e.seq for e in events))
        taken = [e for e in events if self.accepts(e)]
        if taken:
            self._handed.extend(taken)
            self._wake.set()

    async def taken_through(self) -> int | None:
        """The last journal ``seq`` this sink's outbox holds (or filtered out) — where a catch-up from
        the journal starts after a crash; None for a sink that never ran (it starts from now)."""
        assert self.outbox is not None, "start the sink first"
        return await asyncio.to_thread(self.outbox.taken_through)

    async def mark_taken(self, seq: int) -> None:
        """A new sink starts from the journal's present: nothing before ``seq`` is owed to it."""
        assert self.outbox is not None, "start the sink first"
        await asyncio.to_thread(self.outbox.add, [], seq)

    async def start(self) -> None:
        try:
            self.outbox = await asyncio.to_thread(Outbox, self._outbox_path, self._owner, self._max_rows)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot open the event outbox {self._outbox_path} (events.outbox_path): "
                              f"{exc}") from exc
        await self._open()
        await self._refresh_gauges()
        self._task = asyncio.create_task(self._run(), name=f"streamdet-sink-{self.name}")

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.close_timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self.outbox is not None:
            await self._store_handed()  # nothing handed over is lost: it waits for the next start
            await self._refresh_gauges()
            await asyncio.to_thread(self.outbox.close)
            self.outbox = None
        await self._close_transport()

    # --- the sink's task -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._store_handed()
                wait = await self._send_pending()
                await self._refresh_gauges()
            except Exception:  # a bug or a broken outbox file: keep the task, try again later
                log.exception("sink %s: delivery pass failed", self.name)
                wait = UNEXPECTED_ERROR_WAIT_S
            if self._closing and (wait is None or wait > 0) and not self._handed:
                return  # closing: one more pass only when the last one made progress or more came
            if wait == 0 or self._handed:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _store_handed(self) -> None:
        if not self._handed and not self._seen_through:
            return
        handed, self._handed = self._handed, []
        through, self._seen_through = self._seen_through, 0
        rows = [(e.event_id, e.topic, e.event, json.dumps(asdict(e))) for e in handed]
        assert self.outbox is not None
        dropped = await asyncio.to_thread(self.outbox.add, rows, through)
        if not rows:
            return
        self._count("queued", len(rows))
        if dropped:
            log.warning("sink %s: outbox full (%d rows): dropped the %d oldest", self.name, self._max_rows, dropped)
            self._count("dropped", dropped)

    async def _refresh_gauges(self) -> None:
        if self.outbox is None:
            return
        counts = await asyncio.to_thread(self.outbox.counts)
        for state in ("pending", "dead"):
            self._metrics.sink_outbox.labels(self.name, state).set(counts[state])

    def _count(self, state: str, n: int = 1) -> None:
        self._metrics.sink_events.labels(self.name, state).inc(n)

    def _connected(self, up: bool) -> None:
        self._metrics.sink_connected.labels(self.name).set(1 if up else 0)

    # --- for subclasses --------------------------------------------------------------------------

    async def _open(self) -> None:
        """Open the transport (must not fail when the far end is down: delivery retries)."""

    async def _close_transport(self) -> None:
        pass

    async def _send_pending(self) -> float | None:
        """Deliver what is pending; return 0 to be called again at once, seconds to wait before the
        next try, or None when nothing is pending (wait for the next event)."""
        raise NotImplementedError
