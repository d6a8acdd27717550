"""Alerts POSTed as JSON to a webhook, signed, retried from the persistent outbox, dead-lettered.

Each event of the kinds ``events`` lists (``raised``, ``cleared``, ``ended`` by default) becomes one
outbox row, sent as ``POST url`` with the event's JSON as body and the headers:

- ``Content-Type: application/json``
- ``Idempotency-Key: <event_id>``: the same on every attempt; a receiver that keeps the keys it has
  processed handles each event once even if a reply was lost and the event came again;
- ``X-Streamdet-Signature: t=<unix>,v1=<hex>`` (``signature.sign``);
- ``X-Streamdet-Event: <kind>``, ``X-Streamdet-Attempt: <n>`` (1 for the first).

A 2xx answer delivers the event. Anything else (another status, a refused connection, a timeout)
is a failed attempt: the row is retried after ``backoff_s`` doubling up to ``backoff_max_s``, with
jitter, and after ``max_attempts`` failures moves to the outbox's ``dead_letters`` table. Rows are
independent: one failing event does not hold back the others. Pending rows survive a restart and
are sent when the service starts again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp

from streamdet.service.events import Event
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.settings import WebhookSettings
from streamdet.service.sinks.base import OutboxSink, backoff_delay
from streamdet.service.sinks.outbox import OutboxRow
from streamdet.service.sinks.signature import SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)

ROWS_PER_PASS = 50


class WebhookSink(OutboxSink):
    def __init__(self, settings: WebhookSettings, outbox_path: Path, metrics: ServiceMetrics,
                 name: str = "webhook", max_rows: int = 1_000_000, node: str = "") -> None:
        super().__init__(name, outbox_path, metrics, max_rows, node)
        self.settings = settings
        self._secret = settings.secret.get_secret_value()
        self._http: aiohttp.ClientSession | None = None

    def accepts(self, event: Event) -> bool:
        return event.event in self.settings.events

    async def _open(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s))

    async def _close_transport(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _send_pending(self) -> float | None:
        assert self.outbox is not None
        rows = await asyncio.to_thread(self.outbox.pending, ROWS_PER_PASS, time.time())
        attempted = 0
        for row in rows:
            if self._closing and row.attempts > 0:
                continue  # shutting down: a first try for new events, no more retries
            await self._attempt(row)
            attempted += 1
        if attempted:
            return 0
        if self._closing:
            return None
        due = await asyncio.to_thread(self.outbox.next_due)
        return None if due is None else max(0.01, due - time.time())

    async def _attempt(self, row: OutboxRow) -> None:
        assert self.outbox is not None and self._http is not None
        body = row.body.encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": row.event_id,
                   SIGNATURE_HEADER: sign(self._secret, int(time.time()), body),
                   "X-Streamdet-Event": row.kind, "X-Streamdet-Attempt": str(row.attempts + 1)}
        try:
            async with self._http.post(self.settings.url, data=body, headers=headers) as response:
                error = None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            await asyncio.to_thread(self.outbox.mark_delivered, row.id)
            self._connected(True)
            self._count("delivered")
            return
        self._connected(False)
        attempts = row.attempts + 1
        if attempts >= self.settings.max_attempts:
            await asyncio.to_thread(self.outbox.bury, row.id, error)
            self._count("dead")
            log.error("sink %s: event %s dead after %d attempts (%s)", self.name, row.event_id, attempts, error)
            return
        delay = backoff_delay(attempts, self.settings.backoff_s, self.settings.backoff_max_s)
        await asyncio.to_thread(self.outbox.retry_later, row.id, time.time() + delay, error)
        self._count("retried")
        log.warning("sink %s: event %s attempt %d failed (%s); next in %.1f s", self.name, row.event_id,
                    attempts, error, delay)
