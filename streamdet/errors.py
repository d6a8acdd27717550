"""Every exception streamdet raises on purpose, in one tree.

    StreamdetError
    ├── AudioDecodeError      a file could not be decoded (names the path)
    ├── ManifestError         a CM or engine manifest is missing, malformed or does not fit
    ├── CheckpointError       a checkpoint could not be read or was refused as unsafe
    ├── DatasetError          a dataset, list, score file or download is missing or malformed
    ├── ConfigError           settings or an experiment config are invalid
    ├── ServerGoneError       a subscriber heard nothing from the service (no event, no heartbeat)
    └── ProtocolError         a wire message (ZeroMQ frame, WHIP request) is malformed
        └── StreamRejectedError   a well-formed frame refused by the service (limits, sequence)

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


class ServerGoneError(StreamdetError, TimeoutError):
    """No event and no heartbeat from the service for longer than a subscriber's timeout: it stopped,
    or the network between us is down. A ``TimeoutError`` too, for code that waits with a timeout."""

    def __init__(self, endpoint: str, timeout: float) -> None:
        super().__init__(f"nothing from {endpoint} for {timeout:g} s (not even a heartbeat): "
                         "the service is gone or unreachable")
        self.endpoint = endpoint
        self.timeout = timeout


class ProtocolError(StreamdetError):
    """A malformed wire message; ``reason`` is a short label used for counters."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class StreamRejectedError(ProtocolError):
    """A well-formed frame the stream registry refuses (too many streams, repeated sequence number...)."""
