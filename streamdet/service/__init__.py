"""The streaming service behind ``streamdet serve``.

    settings.py    Settings (pydantic-settings)
    frames.py      ZeroMQ ingest protocol v1: parse and encode frames
    events.py      the events the service publishes (score, raised, cleared, end, ended, heartbeat)
    batcher.py     the one task that owns the scorer and batches windows of all streams
    registry.py    the shared registry that ingest adapters feed
    publisher.py   fans events out to the ZeroMQ PUB socket, in-process listeners and sinks
    sinks/         event sinks with a persistent outbox: Redis Streams, signed webhooks
    metrics.py     Prometheus metrics on a per-service registry
    curve.py       optional ZeroMQ CURVE keys
    ingest/        ingest plugins and adapters (ZeroMQ PULL, WHIP/WebRTC), registered in plugins.py
    http.py        the aiohttp app (/healthz, /readyz, /metrics, /info, /streams)
    server.py      Service: startup, serve, graceful shutdown
    logs.py        structured (JSON) log lines

Each stream's own state (edge, windows, verdicts, alerts) is the pure core in ``streamdet.stream``,
and its operating point a ``streamdet.stream.policy.StreamPolicy``.
Nothing heavy is imported here, so the client can use ``frames`` and ``events`` cheaply.
"""
