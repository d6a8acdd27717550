"""Event sinks: where events go besides the ZeroMQ PUB socket and in-process listeners.

A sink receives each batch of published events in ``deliver`` and must never block the event loop:
it queues them and delivers on its own task. ``EventPublisher.add_sink`` registers one;
``build_sinks(settings, metrics)`` makes those the ``[events]`` settings ask for:

- ``redis_streams.RedisStreamSink``: every event appended to Redis Streams (``events.redis_url``);
- ``webhooks.WebhookSink``: alerts POSTed, signed, to each ``[[events.webhooks]]`` URL.

Both keep undelivered events in a persistent outbox (``outbox.Outbox``, SQLite) and retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from streamdet.errors import ConfigError

if TYPE_CHECKING:
    from streamdet.service.events import Event
    from streamdet.service.metrics import ServiceMetrics
    from streamdet.service.settings import Settings


@runtime_checkable
class EventSink(Protocol):
    name: str

    def deliver(self, events: list[Event]) -> None:
        """Take a batch of events (called on the event loop; returns at once)."""

    async def start(self) -> None:
        """Start delivering (open files and connections, start the sink's task)."""

    async def close(self) -> None:
        """Stop: deliver what is queued if it can within a short time, keep the rest for next start."""


def build_sinks(settings: Settings, metrics: ServiceMetrics) -> list[EventSink]:
    """The sinks ``settings.events`` configures (none by default)."""
    sinks: list[EventSink] = []
    events = settings.events
    if events.redis_url is not None:
        try:
            from streamdet.service.sinks.redis_streams import RedisStreamSink
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "redis":
                raise
            raise ConfigError("events.redis_url needs the redis package: pip install 'streamdet[redis]'") from exc

        sinks.append(RedisStreamSink(events, metrics))
    for index, webhook in enumerate(events.webhooks):
        from streamdet.service.sinks.webhooks import WebhookSink

        sinks.append(WebhookSink(webhook, events.outbox_path, metrics, name=f"webhook-{index}",
                                 max_rows=events.outbox_max_rows, node=events.node))
    return sinks
