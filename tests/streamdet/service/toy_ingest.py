"""A toy ingest protocol, to show what adding one takes: this module plus ``plugins.register(PLUGIN)``.

Line-based TCP: each line is ``<stream_id> <sample> <sample> ...`` (float32 text, mono, at the
section's ``sample_rate``) or ``<stream_id> END``. Settings come from ``[ingests.toy]``
(off unless ``enabled``), validated by ``ToySettings``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from streamdet.errors import ProtocolError
from streamdet.service.ingest import IngestContext, IngestPlugin


class ToySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    sample_rate: int = 16_000


class ToyIngest:
    name = "toy"

    def __init__(self, settings: ToySettings) -> None:
        self.settings = settings
        self.port: int | None = None
        self.stopped = False
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._ctx: IngestContext | None = None

    async def start(self, ctx: IngestContext) -> None:
        self._ctx = ctx
        self._server = await asyncio.start_server(self._serve, self.settings.host, self.settings.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._server.wait_closed()
            self._server = None
        self.stopped = True

    def describe(self) -> dict[str, Any]:
        return {"protocol": "toy-lines", "endpoint": f"tcp://{self.settings.host}:{self.port}"}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and self._ctx is not None
        self._connections.add(task)
        try:
            while line := await reader.readline():
                stream_id, _, rest = line.decode().strip().partition(" ")
                try:
                    if rest == "END":
                        self._ctx.registry.end(stream_id)
                        continue
                    samples = np.array(rest.split(), dtype=np.float32).reshape(-1, 1)
                    self._ctx.registry.push(stream_id, samples, self.settings.sample_rate, 1, ingest=self.name)
                except ProtocolError as exc:
                    self._ctx.rejects.report(stream_id, exc, self.name)
        finally:
            self._connections.discard(task)
            writer.close()


def create(section: ToySettings, settings: Any) -> ToyIngest | None:
    return ToyIngest(section) if section.enabled else None


PLUGIN = IngestPlugin("toy", ToySettings, create)
