"""Fixtures for the monitoring page's tests: those of the service tests (``start_service``, ``kit``),
loaded from tests/streamdet/service/conftest.py (with pytest's importlib mode a conftest cannot be
imported by name, and a sibling folder's conftest is not seen)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "streamdet_tests_service_conftest"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).parents[1] / "service" / "conftest.py")
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module  # ``kit`` returns its module through sys.modules
    _spec.loader.exec_module(_module)
_service = sys.modules[_NAME]

kit = _service.kit
start_service = _service.start_service
zmq_context = _service.zmq_context
push = _service.push
