"""The service's settings: one pydantic-settings ``Settings`` with plain nested sections.

Sources, highest priority first:

1. explicit values (the ``serve`` command's flags, or keyword arguments in code);
2. environment variables ``STREAMDET_<SECTION>__<FIELD>``, e.g. ``STREAMDET_SCORING__MAX_BATCH=4``;
3. an optional TOML file (``--config configs/serve.toml``) with one table per section;
4. the defaults below.

The threshold is a spoof probability, ``alerts.spoof_threshold``: a window counts as spoof evidence
when ``p_spoof >= spoof_threshold`` (``streamdet.stream.policy``, which also resolves it: settings >
CM manifest > 0.5). The old key ``alerts.threshold`` (the same value) still works, with a warning.
"""

from __future__ import annotations

import contextvars
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from streamdet.errors import ConfigError
from streamdet.stream.policy import (
    DEFAULT_EARLY,
    DEFAULT_HOP,
    DEFAULT_K,
    DEFAULT_M,
    DEFAULT_MIN_SPEECH,
    DEFAULT_MIN_TAIL,
    DEFAULT_N,
    NEVER_SPOOF_THRESHOLD,
    warn_deprecated,
)

# The TOML file is chosen at run time, but pydantic-settings builds its sources per class; a context
# variable hands the path to ``settings_customise_sources`` without a subclass per file.
_toml_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("streamdet_toml", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestSettings(_Section):
    """ZeroMQ ingest (PULL socket)."""

    enabled: bool = True
    endpoint: str = "tcp://127.0.0.1:5555"
    curve_secret_key: Path | None = None
    """Server certificate (``zmq.auth`` secret key file); set it to require CURVE on this socket."""
    curve_clients_dir: Path | None = None
    """Directory of allowed client public certificates; unset = any client that knows the server key."""
    allow_unauthenticated: bool = False
    """Bind an address other than loopback without CURVE: anyone who can reach it may start streams.
    Off, the service refuses to start with such an endpoint and says how to turn CURVE on."""
    receive_hwm: int | None = Field(None, ge=1)
    """Frames ZeroMQ may queue per connected sender before the service reads them; None (the
    default) = ``limits.max_inflight_bytes // limits.max_frame_bytes`` (64 with the defaults), so
    that the queue is bounded in bytes, not only in frames. A full queue pushes back on the sender."""
    split_channels: bool = False
    """Score each channel of a multi-channel stream as its own stream ``<id>/<channel>``."""


class WindowSettings(_Section):
    """Sliding windows, counted in 16 kHz samples."""

    hop_samples: int = Field(DEFAULT_HOP, ge=1)
    """Samples between window starts; 16,000 = one window per second of audio."""
    early_samples: list[int] = list(DEFAULT_EARLY)
    """Ends of the early windows ``[0, e)`` of the first decision (e.g. ``[32000, 48000]`` for 2 and 3 s),
    each tiled to a full window and judged against ``alerts.first_spoof_threshold``; empty = none."""
    min_tail_samples: int = Field(DEFAULT_MIN_TAIL, ge=0)
    """A stream that ends shorter than a window gives one window, tiled to a full one, only if it has
    at least this many samples (16,000 = 1 s); a shorter one ends with no window (its ``end`` event
    says ``windows`` 0). A tiled window costs a full window to score: without this floor, one sample
    and an end mark per new stream id would buy a full window each (docs/security.md, "Overload").
    ``offline evaluate --serve-config`` reads it too, so offline replays give the same windows."""


class ScoringSettings(_Section):
    """The model and the batcher in front of it."""

    engine: str | None = None  # a CM or engine path, or triton://HOST:PORT/MODEL
    device: str = "auto"
    w2v2_source: str | None = None
    threads: int = Field(0, ge=0)
    """Intra-op threads of the model (torch, ONNX Runtime); 0 lets ``streamdet serve`` choose: on CPU
    the cores divided among the lanes and workers (1 on a 2-core machine), else the backend's default."""
    lanes: int | None = Field(None, ge=1)
    """Threads that score whole batches concurrently (an in-process model), each measuring its batch's
    speech and then scoring it. None lets ``streamdet serve`` choose: on CPU one per core, each with
    one intra-op thread (no barrier between threads inside a batch, no OpenMP spin-waiting; it
    degrades gently when the cores are shared; docs/benchmarks.md); on GPU 2, so that one batch's
    speech is measured on the CPU while the other's is on the GPU."""
    workers: int | None = Field(None, ge=1)
    """Threads scoring the parts of one batch concurrently (torch on CPU). None: 1 (the lanes
    parallelise across batches instead, which keeps a core from waiting for the slower part)."""
    max_batch: int | None = Field(None, ge=1)
    """Most windows per scored batch; None lets ``streamdet serve`` choose: 2 on CPU, where larger
    batches of the Mel-LCNN cost more per window (its activations outgrow the caches), 32 on GPU."""
    batches_in_flight: int | None = Field(None, ge=1)
    """Batches handed to scoring at once; None: one more than the lanes, so that a formed batch is
    waiting whenever a lane finishes and no lane waits for the event loop (a stream is in one batch
    at a time, so its results keep their order)."""
    max_wait_ms: float = Field(10.0, ge=0)
    """How long the batcher waits, after the oldest pending window arrived, for a fuller batch."""
    max_pending_per_stream: int = Field(8, ge=1)
    """Windows of one stream waiting to be scored; beyond it the oldest is dropped (and counted,
    ``overload``)."""
    max_pending_windows: int = Field(1_024, ge=1)
    """Windows of all streams together waiting to be scored. Beyond it the stream with the most
    waiting loses its oldest (``streamdet_windows_dropped_total{reason="over_budget"}``; a stream's
    newest window is never shed); at it, new streams are refused (``overloaded``) and ``/readyz``
    answers 503 (docs/security.md, "Overload")."""
    max_pending_bytes: int = Field(256 << 20, ge=1)
    """Bytes of window audio waiting to be scored, all streams together (256 MiB: about 1,000
    windows of 64,600 float32 samples); the same rules as ``max_pending_windows``."""
    max_latency_s: float = Field(3.0, gt=0)
    """The latency target: before each batch, windows that arrived longer ago than this are shed
    (``over_latency``), except each stream's newest, so an overloaded service scores the present
    instead of falling further behind; while it sheds (and for this long after), new streams are
    refused and ``/readyz`` answers 503."""
    trust_unhashed: bool = False
    """Load a CM whose manifest has no ``weights_sha256`` (refused by default: altered weights would
    load without a word). ``streamdet serve --trust-unhashed``."""


class AlertSettings(_Section):
    """The alert state machine and the ZeroMQ PUB socket that carries events."""

    endpoint: str = "tcp://127.0.0.1:5556"
    spoof_threshold: float | None = Field(None, ge=0.0, le=NEVER_SPOOF_THRESHOLD)
    """P(spoof) at or above which a window counts as spoof evidence; None = manifest, else 0.5."""
    k: int = Field(DEFAULT_K, ge=1)
    n: int = Field(DEFAULT_N, ge=1)
    m: int = Field(DEFAULT_M, ge=1)
    """Raise when k of the last n windows have p_spoof >= spoof_threshold; clear after m windows below."""
    min_speech: float = Field(DEFAULT_MIN_SPEECH, ge=0.0, le=1.0)
    """Windows whose speech fraction (Silero VAD) is below this are gated: they neither count as
    evidence nor clear an alert. 0 turns gating (and the VAD) off."""
    first_spoof_threshold: float | None = Field(None, ge=0.0, le=NEVER_SPOOF_THRESHOLD)
    """The stricter threshold of the early windows (``window.early_samples``); None = spoof_threshold."""
    curve_secret_key: Path | None = None
    curve_clients_dir: Path | None = None
    allow_unauthenticated: bool = False
    """Bind an address other than loopback without CURVE: anyone who can reach it reads every event.
    Off, the service refuses to start with such an endpoint and says how to turn CURVE on."""
    send_hwm: int = Field(10_000, ge=1)
    listener_queue: int = Field(1_000, ge=1)
    """Events buffered per in-process listener before its oldest are dropped."""
    heartbeat_s: float = Field(2.0, gt=0)
    """Seconds between heartbeats on the PUB socket (topic ``hb.``): subscribers tell a quiet
    service from a gone one by them."""

    @model_validator(mode="before")
    @classmethod
    def _old_threshold_key(cls, data: Any) -> Any:
        # ``alerts.threshold`` was already a spoof probability: the same value under the new name.
        if isinstance(data, dict) and "threshold" in data:
            data = dict(data)
            old = data.pop("threshold")
            warn_deprecated("alerts.threshold (STREAMDET_ALERTS__THRESHOLD) is deprecated: use "
                            "alerts.spoof_threshold (STREAMDET_ALERTS__SPOOF_THRESHOLD), same value")
            if data.get("spoof_threshold") is None:  # the new name wins when both are set
                data["spoof_threshold"] = old
        return data

    @model_validator(mode="after")
    def _k_within_n(self) -> AlertSettings:
        if self.k > self.n:
            raise ValueError(f"alerts.k ({self.k}) cannot exceed alerts.n ({self.n})")
        return self


class HttpSettings(_Section):
    """The operations side: /healthz, /readyz, /metrics (and routes that extensions add)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    page: bool = True
    """The monitoring page at ``/`` and its server-sent event stream ``/events``."""
    token: SecretStr | None = None
    """Bearer token that ``/events`` and ``/streams`` require (``Authorization: Bearer ...`` or
    ``?token=...``; the page takes it from its URL, ``/#token=...``, or asks). None = open to anyone
    who can reach the port (loopback by default). See docs/security.md."""
    max_sse_clients: int = Field(100, ge=1)
    """Most ``/events`` clients at once; more are refused with 503 (``streamdet_sse_refused_total``)."""


class WhipSettings(_Section):
    """WebRTC ingest over WHIP (RFC 9725) on the HTTP side: ``POST /whip/<stream_id>`` (needs ``http``)."""

    enabled: bool = True
    token: SecretStr | None = None
    """Bearer token publishers must send (``Authorization: Bearer ...``); None = no authentication."""
    max_peers: int = Field(64, ge=1)
    """Most WebRTC peer connections at once; more are refused with 503."""
    silence_timeout_s: float = Field(5.0, gt=0)
    """A peer whose audio track delivers no frame for this long is closed and its stream ended."""
    connect_timeout_s: float = Field(5.0, gt=0)
    """A peer that has not delivered its first audio frame (ICE + DTLS) this long after its offer is
    closed (a real peer on a working path connects within a second or two); abandoned offers hold a
    peer slot only this long."""
    max_pending_per_address: int = Field(16, ge=1)
    """Most offers from one client address that are answered but not yet connected (no audio yet);
    more are refused with 503, so one address cannot fill ``max_peers`` with abandoned offers. Not
    lower: a gateway (or ``streamdet bench``) starts many calls from one address within a second."""
    split_channels: bool = False
    """Score each channel of a stereo track as its own stream ``<id>/<channel>``."""
    ice_addresses: list[str] = []
    """Host addresses offered as ICE candidates, e.g. ``["127.0.0.1"]``; empty = every interface's
    (aioice's default, which leaves out loopback). Applies process-wide (aioice has no per-connection
    option). No STUN or TURN server is used: the service answers with host candidates only."""

    @field_validator("ice_addresses", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # The serve flag and plain environment values give "a,b"; JSON lists pass through.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class LimitSettings(_Section):
    """Bounds that keep one bad sender from hurting the others."""

    max_streams: int = Field(256, ge=1)
    max_frame_bytes: int = Field(1 << 20, ge=1)
    max_inflight_bytes: int = Field(64 << 20, ge=1)
    """Bytes of received frames the ZeroMQ ingest may hold, per connected sender, before parsing them:
    its receive queue (``ingest.receive_hwm``) is this divided by ``max_frame_bytes``. Beyond it ZeroMQ
    stops reading that sender's connection, and its sends wait. Each turn of the event loop handles at
    most 1 MiB of frames (``ZmqIngest.DRAIN_MAX_BYTES``), so health checks answer during a burst."""
    idle_timeout_s: float = Field(10.0, gt=0)
    """A stream that sends nothing for this long is ended (its last window scored, `end` published)."""
    audio_timeout_s: float | None = Field(60.0, gt=0)
    """A stream that sends no samples for this long is ended (``audio_timeout``) even while keep-alive
    frames (empty payloads) arrive, so that keep-alives cannot hold stream slots forever; None = never."""
    max_streams_per_sender: int | None = Field(128, ge=1)
    """Most live streams of one sender (a CURVE key, else a peer address; WHIP, WebSocket and
    AudioSocket count by client address): one sender cannot take every slot of ``max_streams``. A
    gateway carrying more calls from one address needs it raised; None = no quota."""
    max_seq_gap: int | None = Field(10_000, ge=1)
    """Largest forward jump of a ZeroMQ frame's ``seq`` within a stream (frames lost or skipped); a
    larger jump is refused (``seq_gap``) rather than adopted. 10,000 frames of 20 ms are 200 s, far
    beyond ``idle_timeout_s``; None = any jump."""
    shutdown_timeout_s: float = Field(30.0, gt=0)
    """How long a graceful shutdown waits for pending windows to be scored. Past it the rest are
    given up on: each stream still waiting gets its `end` (reason `unscored`, with the count), the
    count goes to `streamdet_windows_unscored_total`, and `streamdet serve` exits with status 3."""


class WebhookSettings(_Section):
    """One webhook: alerts POSTed as JSON, signed with ``secret`` (docs/protocol.md, "Webhooks")."""

    url: str
    secret: SecretStr
    """Shared with the receiver: the key of the HMAC-SHA256 signature (``X-Streamdet-Signature``)."""
    events: list[Literal["raised", "cleared", "ended", "score", "end"]] = ["raised", "cleared", "ended"]
    """The event kinds sent (``score`` and ``end`` too if listed)."""
    max_attempts: int = Field(10, ge=1)
    """Failed attempts after which an event moves to the dead-letter table."""
    backoff_s: float = Field(1.0, gt=0)
    """Wait after the first failure; doubled after each (with jitter), up to ``backoff_max_s``."""
    backoff_max_s: float = Field(300.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    """Longest wait for the receiver's answer; a timeout counts as a failed attempt."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https://, not {value!r}")
        return value


NODE_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


class EventsSettings(_Section):
    """The node's identity, its journal (SQLite), and where events go besides the ZeroMQ socket:
    Redis Streams and webhooks (``streamdet.service.sinks``, which need the journal)."""

    node_id: str | None = Field(None, pattern=NODE_ID_PATTERN)
    """This service's name in every event (``node``, and ``event_id = <node>-<seq>``); None = the id
    stored in the journal, made once from the host name and a random suffix."""
    score_events: bool = True
    """Publish a ``score`` event for every scored window. False (large deployments whose consumers
    want alerts only): no ``score`` events anywhere (socket, journal, sinks, ``/events``); alert
    transitions, ``end`` and heartbeats go out as before, and ``GET /streams`` still shows each
    stream's last window."""
    journal: bool = True
    """Append every event to the journal before publishing it, so subscribers can replay what they
    missed (``GET /events/journal``, ``streamdet subscribe --since``); false = publish only."""
    journal_path: Path | None = None
    """The journal's SQLite file; None = ``$XDG_STATE_HOME/streamdet/events.sqlite`` (by default
    ``~/.local/state/streamdet/events.sqlite``). One service per journal (a lock file enforces it)."""
    journal_synchronous: Literal["normal", "full"] = "normal"
    """SQLite's ``synchronous`` in WAL mode: ``normal`` survives a killed process (not a power cut)
    with no fsync per commit; ``full`` fsyncs every commit (docs/benchmarks.md, "Journal")."""
    retention_s: float = Field(7 * 86_400.0, gt=0)
    """Events older than this (by ``wall_time``) are deleted from the journal."""
    retention_bytes: int = Field(256 << 20, ge=4096)
    """The most event bytes (their JSON) the journal keeps; beyond it the oldest are deleted."""
    outbox_path: Path = Path("streamdet-outbox.sqlite3")
    """SQLite file of events not yet delivered to Redis or a webhook (created only when one is set)."""
    outbox_max_rows: int = Field(1_000_000, ge=1)
    """Most undelivered events kept per sink; beyond it the oldest are dropped (and counted)."""
    redis_url: str | None = None
    """e.g. ``redis://redis:6379/0``: every event appended to the streams ``<redis_prefix>:alerts``
    (raised, cleared, ended) and ``<redis_prefix>:scores`` (score, end)."""
    redis_prefix: str = "streamdet"
    redis_scores: bool = True
    """Append score and end events too (``<redis_prefix>:scores``); False = alerts only."""
    redis_maxlen: int = Field(100_000, ge=1)
    """Retention: entries kept per stream (approximately: ``XADD MAXLEN ~``)."""
    redis_batch: int = Field(500, ge=1)
    """Most events appended in one round trip."""
    redis_backoff_s: float = Field(0.2, gt=0)
    """First wait before reconnecting to Redis; doubled after each failure up to ``redis_backoff_max_s``."""
    redis_backoff_max_s: float = Field(5.0, gt=0)
    webhooks: list[WebhookSettings] = []

    @model_validator(mode="after")
    def _sinks_need_the_journal(self) -> EventsSettings:
        # Without a journal ``seq`` starts again at each start: event ids (the webhooks' idempotency
        # key) would repeat under a set node id, and a made-up one would orphan the outbox's rows.
        if not self.journal and (self.redis_url is not None or self.webhooks):
            raise ValueError("events.redis_url and events.webhooks need the journal (events.journal = true): "
                             "it keeps the node id and event ids stable across restarts")
        return self


class Settings(BaseSettings):
    """Everything ``streamdet serve`` can be told."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMDET_", env_nested_delimiter="__", extra="forbid", nested_model_default_partial_update=True
    )

    ingest: IngestSettings = IngestSettings()
    window: WindowSettings = WindowSettings()
    scoring: ScoringSettings = ScoringSettings()
    alerts: AlertSettings = AlertSettings()
    http: HttpSettings = HttpSettings()
    whip: WhipSettings = WhipSettings()
    limits: LimitSettings = LimitSettings()
    events: EventsSettings = EventsSettings()
    ingests: dict[str, dict[str, Any]] = {}
    """Settings of ingest plugins without a table of their own, ``[ingests.<name>]``: each plugin
    validates its table (``streamdet.service.ingest.IngestPlugin``)."""
    log_format: Literal["text", "json"] = "text"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_file = _toml_file.get()
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def load_settings(config: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from ``overrides`` (nested dicts, e.g. from CLI flags) > environment > TOML > defaults."""
    if config is not None:
        config = Path(config)
        if not config.is_file():
            raise ConfigError(f"{config}: no such settings file")
        try:
            tomllib.loads(config.read_text())  # a clear message for syntax errors, before pydantic sees it
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config}: invalid TOML: {exc}") from exc
    token = _toml_file.set(config)
    try:
        return Settings(**(overrides or {}))
    except ValidationError as exc:
        where = f" (from {config})" if config else ""
        raise ConfigError(f"invalid settings{where}: {exc}") from exc
    finally:
        _toml_file.reset(token)

