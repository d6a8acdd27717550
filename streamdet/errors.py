"""Every exception streamdet raises on purpose, in one tree.

    StreamdetError
    ├── AudioDecodeError      a file could not be decoded (names the path)
    ├── ManifestError         a CM or engine manifest is missing, malformed or does not fit
    ├── CheckpointError       a checkpoint could not be read or was refused as unsafe
    ├── DatasetError          a dataset, list, score file or download is missing or malformed
    ├── ConfigError           settings or an experiment config are invalid
    ├── ExportError           an export failed, or its engine does not reproduce the CM
    ├── FeatureCacheError     a W2V2 feature cache is missing, incomplete or does not fit
    ├── BenchError            a benchmark could not run (service did not start, no events)
    ├── WhipClientError       a WHIP endpoint refused a publisher's request
    ├── PretrainedModelError  a front-end's pretrained model (XLS-R) cannot be loaded from its source
    ├── ConnectError          a client cannot reach the service, or its CURVE handshake fails
    ├── ServerGoneError       a subscriber heard no event or heartbeat for its timeout
    ├── JournalError          the event journal cannot be opened (in use, unreadable) or replayed
    └── ProtocolError         a wire message (ZeroMQ frame, WHIP request) is malformed
        ├── StreamRejectedError   a well-formed frame refused by the service (limits, sequence)
        ├── WhipError             a WHIP request refused by the service (with its HTTP status)
        └── RtpSessionError       an RTP session request (POST /rtp) refused (with its HTTP status)

Library code raises these; the command-line entry points map them to a message and an exit code,
the service maps them to counters, log lines and HTTP statuses.
"""

from __future__ import annotations


class StreamdetError(Exception):
    """Base class of every error streamdet raises deliberately."""


class AudioDecodeError(StreamdetError):
    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: cannot decode audio ({reason})")
        self.path = path
        self.reason = reason


class ManifestError(StreamdetError):
    """A CM or engine manifest is missing, malformed, or does not match what it is used with."""


class CheckpointError(StreamdetError):
    """A checkpoint could not be read, or was refused because it is unsafe."""


class DatasetError(StreamdetError):
    """A dataset, list file, score file or download is missing, malformed or fails its checksum."""


class ConfigError(StreamdetError):
    """Invalid settings or experiment configuration."""


class ExportError(StreamdetError):
    """An export failed, or its result does not reproduce the torch CM."""


class FeatureCacheError(StreamdetError):
    """A feature cache is missing, incomplete, or does not match what it is used with."""


class BenchError(StreamdetError):
    """The benchmark could not run (server failed to start, no events, ...)."""


class WhipClientError(StreamdetError):
    """The WHIP endpoint refused a request (``status``, ``title`` = reason, ``detail``)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        where = f"WHIP endpoint answered {status} " if status else "WHIP session ended: "
        super().__init__(f"{where}{title}: {detail}".rstrip(": "))
        self.status = status
        self.title = title
        self.detail = detail


class PretrainedModelError(StreamdetError):
    """A front-end's pretrained model (XLS-R) could not be loaded from its hub id or directory.

    ``remedy`` ends the message: what the user can do (the CLI that loads the CM knows its flag).
    """

    def __init__(self, source: str, reason: str, remedy: str = "") -> None:
        super().__init__(f"cannot load XLS-R from {source!r}: {reason}" + (f"; {remedy}" if remedy else ""))
        self.source = source
        self.reason = reason
        self.remedy = remedy


class ConnectError(StreamdetError):
    """A client could not connect to the service in time, or the service refused its CURVE handshake."""


class ServerGoneError(StreamdetError, TimeoutError):
    """A subscriber received neither an event nor a heartbeat for its timeout: the service stopped, or
    the network to it is down. Also a ``TimeoutError``, so code that waited with a timeout catches it."""

    def __init__(self, endpoint: str, timeout: float) -> None:
        super().__init__(f"no event or heartbeat for {timeout:g} s; is the server at {endpoint} running?")
        self.endpoint = endpoint
        self.timeout = timeout


class JournalError(StreamdetError):
    """The event journal cannot be opened (another service holds it, the file is not a journal) or
    a replay from it failed (no journal on that service, a malformed answer)."""


class ProtocolError(StreamdetError):
    """A malformed wire message; ``reason`` is a short label used for counters."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class StreamRejectedError(ProtocolError):
    """A well-formed frame the stream registry refuses (too many streams, repeated sequence number...)."""


class WhipError(ProtocolError):
    """A refused WHIP request: ``reason`` labels the counter, ``status`` is the HTTP status."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.status = status


class RtpSessionError(ProtocolError):
    """A refused ``POST /rtp`` or ``DELETE /rtp/<session>``: ``reason`` labels the counter, ``status``
    is the HTTP status."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.status = status
