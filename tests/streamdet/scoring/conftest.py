"""Fixtures for the scorer tests: a random Mel-LCNN as CM, ONNX engine and Triton model, and a real
Triton server (``tritonserver`` from nvidia-pytriton, see scripts/start_triton.py) started on loopback.

The Triton tests skip unless ``STREAMDET_TRITON_PYTHON`` names the python of an environment holding
``nvidia-pytriton`` and ``onnxruntime`` (``.ci/run`` prepares one from Debian's /usr/bin/python3.11).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TRITON_ENV = "STREAMDET_TRITON_PYTHON"


def load_script(name: str):
    """Import ``scripts/<name>.py`` (not a package) once."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def mel_onnx_engine(random_mel_cm: Path, tmp_path_factory) -> Path:
    """``<tmp>/random_mel-onnx`` with model.onnx + manifest.json."""
    from offline.export.onnx import export_onnx

    out = tmp_path_factory.mktemp("engines") / "random_mel-onnx"
    export_onnx(random_mel_cm, out)
    return out


@pytest.fixture(scope="session")
def triton_python() -> str:
    python = os.environ.get(TRITON_ENV)
    if not python:
        pytest.skip(f"no Triton server environment: set {TRITON_ENV} (see scripts/start_triton.py)")
    if not Path(python).is_file():
        pytest.fail(f"{TRITON_ENV}={python} does not exist")
    return python


@pytest.fixture(scope="session")
def start_triton(triton_python: str) -> Iterator[Callable[[Path], object]]:
    """``start_triton(repository)``: a ready ``TritonServer`` for that repository (one per repository)."""
    module = load_script("start_triton")
    servers: dict[Path, object] = {}

    def start(repository: Path) -> object:
        if repository not in servers:
            servers[repository] = module.TritonServer(repository, python=triton_python).start()
        return servers[repository]

    yield start
    for server in servers.values():
        server.cleanup()


@pytest.fixture(scope="session")
def triton_repo(random_mel_cm: Path, tmp_path_factory) -> Path:
    """A model repository with the random Mel-LCNN as ``random_mel`` (Python backend + ONNX Runtime)."""
    from offline.export.triton import export_triton

    repo = tmp_path_factory.mktemp("triton_repo")
    export_triton(random_mel_cm, repo, backend="python", max_batch=8, max_queue_delay_us=1000)
    return repo


@pytest.fixture(scope="session")
def triton_url(start_triton, triton_repo: Path) -> str:
    server = start_triton(triton_repo)
    return f"triton://{server.grpc_url}/random_mel"
