"""``python constant_service.py '<settings overrides as JSON>'``: a real service process with a
model-free scorer (``ConstantScorer``), for tests that measure the process itself (its memory, its
log volume) without a model's cost. Logs go to stderr, one JSON object per line; the ``ready:`` line
says where it listens; SIGTERM stops it gracefully."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

from streamdet.scoring.constant import ConstantScorer
from streamdet.service.logs import use_json_logs
from streamdet.service.server import Service
from streamdet.service.settings import load_settings


async def main(overrides: dict) -> None:
    service = Service(load_settings(None, overrides), ConstantScorer(0.9))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await service.run(stop)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    use_json_logs()
    asyncio.run(main(json.loads(sys.argv[1])))
