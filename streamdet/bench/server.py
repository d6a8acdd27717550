"""The service under load: start ``streamdet serve`` or reach a running one, and read what it costs.

- ``ServerProcess``: ``python -m streamdet serve`` on loopback ports with JSON logs (stderr drained);
- ``Endpoints``: where a service listens (ZeroMQ ingest and events, HTTP for /metrics);
- ``ProcessStats``: CPU seconds and resident memory of its pid, from /proc;
- ``scrape_metrics`` / ``metrics_delta``: its Prometheus counters, and what one step added to them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamdet.errors import BenchError

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"ingest": 5555, "events": 5556, "http": 8080}
LOOPBACK_ANY = "tcp://127.0.0.1:*"


# --- where the service is ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    """How to reach a service: ZeroMQ ingest and events, and the HTTP base URL (None: no /metrics)."""

    ingest: str
    events: str
    http: str | None = None

    @classmethod
    def for_host(cls, host: str, ingest: str | None = None, events: str | None = None,
                 http: str | None = None) -> Endpoints:
        """Default ports on ``host`` (``streamdet serve``'s defaults), each overridable; ``http=""``: none."""
        return cls(ingest or f"tcp://{host}:{DEFAULT_PORTS['ingest']}",
                   events or f"tcp://{host}:{DEFAULT_PORTS['events']}",
                   (http or None) if http is not None else f"http://{host}:{DEFAULT_PORTS['http']}")


def parse_ready(message: str) -> Endpoints:
    """The service's ``ready: ingest X, events Y, http Z`` log message → Endpoints."""
    if not message.startswith("ready:"):
        raise ValueError(f"not a ready message: {message!r}")
    parts = dict(part.strip().split(" ", 1) for part in message[len("ready:"):].split(","))
    http = parts.get("http")
    return Endpoints(parts["ingest"], parts["events"], None if http in (None, "off") else http)


class ServerProcess:
    """``python -m streamdet serve --engine ENGINE`` on loopback ports, JSON logs on stderr (drained,
    the last lines kept for error messages). Its event journal is a private one, removed at ``stop``
    (unless ``STREAMDET_EVENTS__JOURNAL_PATH`` says where): a benchmark pays the journal's cost like a
    real service, but must neither fill the user's journal nor collide with a service already running."""

    def __init__(self, engine: str | Path, serve_args: Sequence[str] = (), device: str | None = None) -> None:
        self.engine = str(engine)
        self.serve_args = list(serve_args)
        self.device = device
        self.process: asyncio.subprocess.Process | None = None
        self.endpoints: Endpoints | None = None
        self.log_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.warnings = 0
        self._drain: asyncio.Task[None] | None = None
        self._state_dir: str | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "streamdet", "serve", "--engine", self.engine, "--ingest", LOOPBACK_ANY,
               "--events", LOOPBACK_ANY, "--http-port", "0", "--log-format", "json"]
        if self.device:
            cmd += ["--device", self.device]
        return cmd + self.serve_args

    async def start(self, timeout_s: float = 300.0) -> Endpoints:
        """Start the server and wait for its ready line; BenchError (with its last log lines) if it dies."""
        import streamdet

        root = str(Path(streamdet.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        if "STREAMDET_EVENTS__JOURNAL_PATH" not in env:
            self._state_dir = tempfile.mkdtemp(prefix="streamdet-bench-")
            env["STREAMDET_EVENTS__JOURNAL_PATH"] = str(Path(self._state_dir) / "events.sqlite")
        self.process = await asyncio.create_subprocess_exec(
            *self.command(), env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        try:
            self.endpoints = await asyncio.wait_for(self._wait_ready(), timeout_s)
        except (TimeoutError, BenchError):
            await self.stop()
            tail = "\n".join(self.log_tail)
            raise BenchError(f"streamdet serve did not become ready; its last log lines:\n{tail}") from None
        self._drain = asyncio.create_task(self._read_lines(), name="bench-server-log")
        return self.endpoints

    async def _wait_ready(self) -> Endpoints:
        assert self.process is not None and self.process.stderr is not None
        while True:
            line = await self.process.stderr.readline()
            if not line:
                raise BenchError("server exited")
            message = self._note(line)
            if message is not None and message.startswith("ready:"):
                return parse_ready(message)

    def _note(self, line: bytes) -> str | None:
        text = line.decode("utf-8", "replace").rstrip()
        self.log_tail.append(text)
        try:
            entry = json.loads(text)
        except json.JSONDecodeError:
            return None
        if entry.get("level") in ("WARNING", "ERROR", "CRITICAL"):
            self.warnings += 1
        return str(entry.get("message", ""))

    async def _read_lines(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self._note(line)

    async def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM (graceful shutdown), then SIGKILL after ``timeout_s``; returns the exit status."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain, 5)
        if self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None
        return self.process.returncode


# --- what the server costs --------------------------------------------------------------------------


class ProcessStats:
    """CPU seconds and resident memory of one process, from /proc (Linux); None where unreadable."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float | None:
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads

    def rss_bytes(self) -> int | None:
        if self.pid is None:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None


def scrape_metrics(http: str | None, timeout_s: float = 10.0) -> dict[str, float]:
    """The service's /metrics as {sample name with labels: value}; {} without HTTP or on failure."""
    if not http:
        return {}
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = urllib.request.urlopen(f"{http.rstrip('/')}/metrics", timeout=timeout_s).read().decode()
    except OSError as exc:
        log.warning("cannot read %s/metrics: %s", http, exc)
        return {}
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{labels}}}" if labels else "")] = float(sample.value)
    return samples


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """What one step added to the service's counters: scored, dropped, rejects, batches, WHIP media."""
    if not after:
        return {}

    def total(prefix: str, source: dict[str, float]) -> float:
        return sum(v for k, v in source.items() if k == prefix or k.startswith(prefix + "{"))

    def delta(prefix: str) -> float:
        return total(prefix, after) - total(prefix, before)

    by_reason: dict[str, float] = {}
    for key, value in after.items():
        if key.startswith("streamdet_windows_dropped_total{"):
            gained = value - before.get(key, 0.0)
            if gained:
                by_reason[key.split('reason="', 1)[1].split('"', 1)[0]] = gained
    batches = delta("streamdet_batch_size_count")
    return {
        "windows_scored": int(delta("streamdet_windows_scored_total")),
        "windows_dropped": int(delta("streamdet_windows_dropped_total")),
        "windows_dropped_by_reason": {k: int(v) for k, v in by_reason.items()},
        "rejects": int(delta("streamdet_ingest_rejects_total")),
        "whip_rejects": int(delta("streamdet_whip_rejects_total")),
        "whip_concealed_s": round(delta("streamdet_whip_concealed_seconds_total"), 3),
        "frames": int(delta("streamdet_ingest_frames_total")),
        "batches": int(batches),
        "mean_batch_size": round(delta("streamdet_batch_size_sum") / batches, 3) if batches else None,
        "mean_batch_ms": round(1000 * delta("streamdet_batch_seconds_sum") / batches, 3) if batches else None,
    }
