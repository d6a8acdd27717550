"""Every event appended to Redis Streams, so that the alerts of many nodes meet in one ordered place.

Streams (``events.redis_prefix``, ``streamdet`` by default), shared by every node:

- ``streamdet:alerts``: ``raised``, ``cleared`` and ``ended``;
- ``streamdet:scores``: ``score`` and ``end`` (unless ``events.redis_scores`` is false).

Each entry has the fields ``event_id``, ``topic`` and ``event`` (the event's JSON, as on ZeroMQ).
A node appends its events one batch at a time, in publication order, and an audio stream lives on
one node: so within a stream's key, each audio stream's events keep their order (entries of
different nodes interleave). Retention: ``XADD ... MAXLEN ~ events.redis_maxlen``.

While Redis is away, events wait in the outbox (SQLite, ``events.outbox_path``) and are appended in
order once it is back; the sink reconnects with exponential backoff (``redis_backoff_s`` doubling to
``redis_backoff_max_s``). Appends are idempotent: a Lua script appends a batch and records, in
``streamdet:appended:<node>``, the outbox's name and the last row id appended, in one atomic step;
a batch retried after a lost reply skips the rows already there. Consumers read with
``streamdet subscribe --redis`` (``streamdet.client.redis_subscriber``).
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from streamdet.service.events import ALERT_TOPIC, Event
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.settings import EventsSettings
from streamdet.service.sinks.base import OutboxSink, backoff_delay

log = logging.getLogger(__name__)

ALERTS, SCORES = "alerts", "scores"

# KEYS: the node's marker, the alerts stream, the scores stream.
# ARGV: the outbox's name, MAXLEN, then per row: row id, 2 (alerts) or 3 (scores), event id, topic, JSON.
_APPEND = """
local mark = redis.call('GET', KEYS[1])
local last = 0
if mark then
  local box, row = string.match(mark, '^(.*):(%d+)$')
  if box == ARGV[1] then last = tonumber(row) end
end
local top = last
local added = 0
for i = 3, #ARGV, 5 do
  local row = tonumber(ARGV[i])
  if row > last then
    redis.call('XADD', KEYS[tonumber(ARGV[i + 1])], 'MAXLEN', '~', ARGV[2], '*',
               'event_id', ARGV[i + 2], 'topic', ARGV[i + 3], 'event', ARGV[i + 4])
    added = added + 1
    if row > top then top = row end
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. top)
return added
"""


def stream_key(prefix: str, which: str) -> str:
    """The Redis key of the ``alerts`` or ``scores`` stream."""
    return f"{prefix}:{which}"


class RedisStreamSink(OutboxSink):
    def __init__(self, settings: EventsSettings, metrics: ServiceMetrics, node: str, name: str = "redis") -> None:
        super().__init__(name, settings.outbox_path, metrics, settings.outbox_max_rows, node)
        assert settings.redis_url is not None
        self.settings = settings
        self.node = node
        self._keys = [f"{settings.redis_prefix}:appended:{self.node}",
                      stream_key(settings.redis_prefix, ALERTS), stream_key(settings.redis_prefix, SCORES)]
        self._failures = 0
        self._client: Redis | None = None
        self._script = None

    def accepts(self, event: Event) -> bool:
        return self.settings.redis_scores or event.topic.startswith(ALERT_TOPIC)

    async def _open(self) -> None:
        # No retries inside the client: this sink retries (with its backoff) from the outbox.
        self._client = Redis.from_url(self.settings.redis_url, retry=Retry(NoBackoff(), 0),
                                      socket_connect_timeout=2.0, socket_timeout=5.0)
        self._script = self._client.register_script(_APPEND)

    async def _close_transport(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _send_pending(self) -> float | None:
        assert self.outbox is not None and self._script is not None
        rows = await asyncio.to_thread(self.outbox.pending, self.settings.redis_batch)
        if not rows:
            return None
        args: list[str | int] = [self.outbox.outbox_id, self.settings.redis_maxlen]
        for row in rows:
            args += [row.id, 2 if row.topic.startswith(ALERT_TOPIC) else 3, row.event_id, row.topic, row.body]
        try:
            added = await self._script(keys=self._keys, args=args)
        except (RedisError, OSError) as exc:
            self._failures += 1
            self._count("retried", len(rows))
            if self._failures == 1:
                log.warning("sink %s: Redis unreachable (%s); keeping events in the outbox", self.name, exc)
            self._connected(False)
            return backoff_delay(self._failures, self.settings.redis_backoff_s, self.settings.redis_backoff_max_s)
        if self._failures:
            log.info("sink %s: Redis is back after %d failed attempt(s)", self.name, self._failures)
        self._failures = 0
        self._connected(True)
        await asyncio.to_thread(self.outbox.remove, [row.id for row in rows])
        self._count("delivered", len(rows))
        if added != len(rows):
            log.info("sink %s: %d event(s) were already in Redis (a reply lost before)", self.name,
                     len(rows) - int(added))
        return 0
