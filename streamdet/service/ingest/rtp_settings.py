"""Settings of the RTP ingest, ``[ingests.rtp]`` (``STREAMDET_INGESTS__RTP__<FIELD>``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from streamdet.errors import ConfigError
from streamdet.service.frames import STREAM_ID_PATTERN
from streamdet.service.ingest.rtp_codecs import parse_format


class RtpSettings(BaseModel):
    """``[ingests.rtp]``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    host: str = "127.0.0.1"
    """Address the UDP ports bind to."""
    public_host: str | None = None
    """The address ``POST /rtp`` tells senders to use; None = ``host`` (set it when ``host`` is
    ``0.0.0.0`` or behind NAT)."""
    ports: dict[int, str] = {}
    """Static ports and the stream each feeds, e.g. ``{5004 = "call-a"}``."""
    payload_types: dict[int, str] = {}
    """Dynamic payload types (96-127), e.g. ``{96 = "opus/48000/2", 101 = "telephone-event/8000"}``;
    static ones (0 PCMU, 8 PCMA, 9 G.722, 10/11 L16, 13 CN) are always known."""
    jitter_ms: float = Field(60.0, ge=0)
    """How long a missing packet is waited for before it is declared lost."""
    max_conceal_s: float = Field(1.0, ge=0)
    """Longest timestamp gap filled with silence; longer ones are pauses."""
    idle_timeout_s: float = Field(5.0, gt=0)
    rtcp_port: bool = True
    """Also receive RTCP on port + 1 (where it is free); RTCP multiplexed on the port always works."""
    sessions: bool = True
    """``POST /rtp`` opens ports on demand (needs ``http``)."""
    token: SecretStr | None = None
    """Bearer token ``POST``/``DELETE /rtp`` must carry; None = none."""
    session_ports: tuple[int, int] | None = None
    """Range for session ports (inclusive); None = any free port the system picks."""
    session_timeout_s: float = Field(300.0, gt=0)
    """A session port that receives nothing for this long is closed."""
    max_sessions: int = Field(256, ge=1)
    max_sources_per_port: int = Field(4, ge=1)
    receive_buffer_bytes: int = Field(1 << 20, ge=0)
    """Kernel receive buffer per port (``SO_RCVBUF``; the system caps it at ``net.core.rmem_max``):
    room for bursts while the event loop is busy scoring. 0 keeps the system default."""
    split_channels: bool = False
    """Score each channel of a stereo stream (L16 stereo, Opus stereo) as ``<id>/0``, ``<id>/1``."""

    @field_validator("ports")
    @classmethod
    def _stream_names(cls, ports: dict[int, str]) -> dict[int, str]:
        for port, name in ports.items():
            if not 1 <= port <= 65535 or not STREAM_ID_PATTERN.fullmatch(name):
                raise ValueError(f"port {port} = {name!r}: a port 1-65535 and a stream id of [A-Za-z0-9._:@/-]")
        if len(set(ports.values())) != len(ports):
            raise ValueError("two ports feed the same stream")
        return ports

    @field_validator("payload_types")
    @classmethod
    def _dynamic_types(cls, types: dict[int, str]) -> dict[int, str]:
        for payload_type, text in types.items():
            if not 96 <= payload_type <= 127:
                raise ValueError(f"payload type {payload_type}: dynamic types are 96-127")
            try:
                parse_format(text)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return types
