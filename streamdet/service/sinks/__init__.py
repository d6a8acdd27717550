"""Event sinks: further destinations of the events, after the journal.

``EventPublisher`` stamps each event (node, seq, stream_seq, event_id), appends it to the journal,
and once the journal has committed a batch hands that batch to the ZeroMQ socket, to in-process
listeners and to every sink registered with ``EventPublisher.add_sink``. The journal is not a sink:
it comes first and fixes the sequence numbers every sink sees.

A sink's ``deliver`` is called on the event loop with each committed batch, in ``seq`` order, and
must return at once: a sink that talks to a network queues the events and sends them from its own
task (started in ``start``, drained and stopped in ``close``). It never raises into the publisher;
an exception from ``deliver`` is logged and counted, and the other sinks still get the batch.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from streamdet.service.events import Event


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
