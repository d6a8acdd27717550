"""Waiting for a ``streamdet serve`` subprocess to be ready, for the tests that run real ones.

``serve`` started with ``--log-format json`` and loopback ``*`` ports (``--http-port 0``) says where it
listens in one log line on stderr, ``ready: ingest tcp://..., events tcp://..., http http://...``;
``wait_ready`` reads stderr up to it and returns the endpoints (parsed by the bench's
``parse_ready``, the same line ``streamdet.bench.server.ServerProcess`` waits for).

Test modules load this file by its path (``importlib.util.spec_from_file_location``): with pytest's
importlib mode a test module cannot import a sibling by name.
"""

from __future__ import annotations

import asyncio
import collections
import json

from streamdet.bench.server import Endpoints, parse_ready

LINE_TIMEOUT_S = 120.0
"""How long one log line may take: the model's load comes before ``ready:`` on a loaded machine."""


async def wait_ready(proc: asyncio.subprocess.Process, line_timeout_s: float = LINE_TIMEOUT_S) -> Endpoints:
    """Read ``proc``'s stderr (a pipe) up to its ``ready:`` line and return its endpoints. Fails the
    test, with the last lines read, if the process exits first; ``TimeoutError`` if a line takes more
    than ``line_timeout_s``. The caller must keep draining stderr afterwards (a full pipe blocks serve)."""
    assert proc.stderr is not None, "start serve with stderr=asyncio.subprocess.PIPE"
    tail: collections.deque[str] = collections.deque(maxlen=20)
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), line_timeout_s)
        if not line:
            raise AssertionError("serve exited before it was ready; its last log lines:\n" + "\n".join(tail))
        text = line.decode("utf-8", "replace").rstrip()
        tail.append(text)
        try:
            message = json.loads(text)["message"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # not a JSON log record (a warning printed by a library, a traceback line)
        if isinstance(message, str) and message.startswith("ready:"):
            return parse_ready(message)
