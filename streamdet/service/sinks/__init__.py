"""Event sinks: further destinations of the events, after the journal.

``EventPublisher`` stamps each event (node, seq, stream_seq, event_id), appends it to the journal,
and once the journal has committed a batch hands that batch to the ZeroMQ socket, to in-process
listeners and to every sink registered with ``EventPublisher.add_sink`` (``Service.add_sink``). The
journal is not a sink: it comes first and fixes the sequence numbers every sink sees.

A sink's ``deliver`` is called on the event loop with each committed batch, in ``seq`` order, and
must return at once: a sink that talks to a network queues the events and sends them from its own
task (started in ``start``, drained and stopped in ``close``). It never raises into the publisher;
an exception from ``deliver`` is logged and counted, and the other sinks still get the batch.

``build_sinks(settings, metrics, node)`` makes the sinks the ``[events]`` settings ask for (none by default):

- ``redis_streams.RedisStreamSink``: every event appended to Redis Streams (``events.redis_url``);
- ``webhooks.WebhookSink``: alerts POSTed, signed, to each ``[[events.webhooks]]`` URL.

Both keep undelivered events in a persistent outbox (``outbox.Outbox``, SQLite) and retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from streamdet.errors import ConfigError
from streamdet.service.events import Event

if TYPE_CHECKING:
    from streamdet.service.metrics import ServiceMetrics
    from streamdet.service.settings import Settings


@runtime_checkable
class EventSink(Protocol):
    name: str
    """Names the sink in logs and metrics."""

    def deliver(self, events: list[Event]) -> None:
        """Take a committed batch (in seq order) without blocking the event loop."""

    async def start(self) -> None:
        """Connect, start the sending task: called once, before the first ``deliver``."""

    async def close(self) -> None:
        """Send what is queued (within the sink's own time limit) and stop."""


def build_sinks(settings: Settings, metrics: ServiceMetrics, node: str) -> list[EventSink]:
    """The sinks ``settings.events`` configures (none by default), for the node ``node`` (the
    publisher's: its outbox rows and Redis marker are kept under that name)."""
    sinks: list[EventSink] = []
    events = settings.events
    if events.redis_url is not None:
        try:
            from streamdet.service.sinks.redis_streams import RedisStreamSink
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "redis":
                raise
            raise ConfigError("events.redis_url needs the redis package: pip install 'streamdet[redis]'") from exc

        sinks.append(RedisStreamSink(events, metrics, node))
    for index, webhook in enumerate(events.webhooks):
        from streamdet.service.sinks.webhooks import WebhookSink

        sinks.append(WebhookSink(webhook, events.outbox_path, metrics, name=f"webhook-{index}",
                                 max_rows=events.outbox_max_rows, node=node))
    return sinks
