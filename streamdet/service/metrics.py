"""Prometheus metrics of one service, on its own CollectorRegistry (several services can share a
process, as the tests do). Rendered by ``/metrics``; ``streamdet bench`` reads the same names."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.active_streams = Gauge("streamdet_active_streams", "Streams receiving audio", registry=r)
        self.streams_started = Counter("streamdet_streams_started", "Streams started", registry=r)
        self.streams_ended = Counter("streamdet_streams_ended", "Streams ended, by reason", ["reason"], registry=r)
        self.ingest_info = Info("streamdet_ingest", "The ingests started (protocol, endpoint...), by name",
                                ["name"], registry=r)
        self.frames = Counter("streamdet_ingest_frames", "Frames accepted", ["adapter"], registry=r)
        self.rejects = Counter("streamdet_ingest_rejects", "Frames (or streams) rejected, by reason",
                               ["reason"], registry=r)
        self.clipped_samples = Counter("streamdet_ingest_clipped_samples",
                                       "f32le samples outside [-1, 1] clipped to it, by adapter", ["adapter"],
                                       registry=r)
        self.windows_scored = Counter("streamdet_windows_scored", "Windows scored and published", registry=r)
        self.windows_dropped = Counter("streamdet_windows_dropped", "Windows dropped before scoring, by reason",
                                       ["reason"], registry=r)
        self.windows_unscored = Counter("streamdet_windows_unscored", "Windows given up on when the shutdown "
                                        "ran out of time (limits.shutdown_timeout_s)", registry=r)
        self.queue_depth = Gauge("streamdet_queue_depth", "Windows waiting for the batcher", registry=r)
        self.overloaded = Gauge("streamdet_overloaded", "1 while scoring is over its budget or latency target "
                                "(windows shed, new streams refused, /readyz 503)", registry=r)
        self.batch_size = Histogram("streamdet_batch_size", "Windows per scored batch", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.batch_seconds = Histogram("streamdet_batch_seconds", "Time to score one batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("streamdet_latency_seconds",
                                 "Arrival of a window's last sample to publication of its score",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.alerts = Counter("streamdet_alerts", "Alert transitions, by event", ["event"], registry=r)
        self.sse_clients = Gauge("streamdet_sse_clients", "Clients of the /events stream", registry=r)
        self.sse_refused = Counter("streamdet_sse_refused", "/events clients refused, by reason", ["reason"],
                                   registry=r)
        self.journal_batch = Histogram("streamdet_journal_batch_events", "Events per journal commit",
                                       buckets=BATCH_BUCKETS, registry=r)
        self.journal_delay = Histogram("streamdet_journal_delay_seconds",
                                       "Publication of an event to its batch's commit: the longest wait in each "
                                       "batch", buckets=LATENCY_BUCKETS, registry=r)
        self.journal_failures = Counter("streamdet_journal_failures", "Batches published without being journaled "
                                        "(the journal failed: see the log)", registry=r)
        self.ready = Gauge("streamdet_ready", "1 once the scorer is warm and sockets are bound", registry=r)
        # WebRTC ingest (WHIP); its accepted audio frames count in streamdet_ingest_frames{adapter="whip"}.
        self.whip_rejects = Counter("streamdet_whip_rejects", "WHIP requests refused, by reason", ["reason"],
                                    registry=r)
        self.whip_sessions = Counter("streamdet_whip_sessions", "WHIP sessions accepted (201)", registry=r)
        self.whip_closed = Counter("streamdet_whip_sessions_closed", "WHIP sessions closed, by reason",
                                   ["reason"], registry=r)
        self.whip_peers = Gauge("streamdet_whip_peers", "WebRTC peer connections open", registry=r)
        self.whip_concealed = Counter("streamdet_whip_concealed_seconds",
                                      "Silence inserted for audio lost in transit (RTP timestamp gaps)",
                                      registry=r)

        # Event sinks (Redis Streams, webhooks): what happened to each event, and the outbox now.
        self.sink_events = Counter(
            "streamdet_sink_events", "Events by sink and what happened to them: queued, delivered, retried "
            "(a failed attempt), dead (moved to the dead letters), dropped (outbox full)",
            ["sink", "state"], registry=r)
        self.sink_outbox = Gauge("streamdet_sink_outbox", "Outbox rows by sink and state (pending, dead)",
                                 ["sink", "state"], registry=r)
        self.sink_connected = Gauge("streamdet_sink_connected", "1 while the sink's last attempt succeeded",
                                    ["sink"], registry=r)

    def track_queue_depth(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)
