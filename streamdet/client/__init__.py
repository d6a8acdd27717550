"""Python clients of ``streamdet serve``: send audio, follow events.

    from streamdet.client import send_file, Subscriber

``Sender``/``send_file``/``send_file_async``/``send_files_async`` push audio (``sender.py``);
``Subscriber``/``iter_events`` follow score and alert events (``subscriber.py``), the former with
replay from the service's journal (``Since``, ``MissedEvents``: ``replay.py``);
``RedisSubscriber`` follows every node's events in Redis Streams (``redis_subscriber.py``, needs the
``redis`` extra; imported from its module); ``verify_signature`` checks a webhook's signature.
"""

from streamdet.client.replay import MissedEvents, Since
from streamdet.client.sender import (
    DEFAULT_INGEST,
    Sender,
    SendResult,
    send_file,
    send_file_async,
    send_files_async,
    stream_id_for,
)
from streamdet.client.subscriber import DEFAULT_EVENTS, Subscriber, iter_events
from streamdet.errors import ServerGoneError
from streamdet.service.events import EndEvent, Event, Heartbeat, WindowEvent
from streamdet.service.sinks.signature import verify as verify_signature

__all__ = [
    "DEFAULT_EVENTS", "DEFAULT_INGEST", "EndEvent", "Event", "Heartbeat", "MissedEvents", "SendResult", "Sender",
    "ServerGoneError", "Since", "Subscriber",
    "WindowEvent", "iter_events", "send_file", "send_file_async", "send_files_async", "stream_id_for",
    "verify_signature",
]
