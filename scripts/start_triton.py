#!/usr/bin/env python3
"""Run a real Triton Inference Server on this machine from the ``nvidia-pytriton`` wheel.

PyTriton ships a ``tritonserver`` binary with only the Python backend. It runs on a CPU-only machine
when its Python's libpython matches the interpreter's standard library: Debian's ``/usr/bin/python3.11``
works, pyenv builds do not. Prepare that environment once::

    /usr/bin/python3.11 -m venv /opt/streamdet-triton
    /opt/streamdet-triton/bin/pip install nvidia-pytriton onnxruntime
    export STREAMDET_TRITON_PYTHON=/opt/streamdet-triton/bin/python

then serve a repository written by ``offline export --format triton --triton-backend python``::

    python scripts/start_triton.py engines/triton --grpc-port 8001

The test fixtures import this file: ``TritonServer`` starts the binary on free loopback ports, waits
until the server is ready and stops it again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PYTHON_ENV = "STREAMDET_TRITON_PYTHON"

_PROBE = (
    "import json, sys, pathlib, pytriton; "
    "root = pathlib.Path(pytriton.__file__).parent; "
    "print(json.dumps({'root': str(root), 'version': f'{sys.version_info[0]}.{sys.version_info[1]}'}))"
)


class TritonUnavailable(RuntimeError):
    """The Triton Python environment is missing or broken (tests skip on this)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def locate(python: str | Path) -> tuple[Path, Path, str]:
    """(pytriton's tritonserver dir, its bundled libs dir, python X.Y) for the environment of ``python``."""
    import json

    try:
        result = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise TritonUnavailable(f"{python} cannot import pytriton: {exc}") from exc
    info = json.loads(result.stdout.strip().splitlines()[-1])
    root = Path(info["root"])
    server_dir = root / "tritonserver"
    if not (server_dir / "bin" / "tritonserver").is_file():
        raise TritonUnavailable(f"no tritonserver binary under {server_dir}")
    return server_dir, root.parent / "nvidia_pytriton.libs", info["version"]


def prepare_backends(server_dir: Path, version: str, into: Path) -> Path:
    """A backend directory holding the Python backend with the stub built for ``version``."""
    backends = into / "backends"
    shutil.copytree(server_dir / "backends", backends, dirs_exist_ok=True)
    stub = server_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonUnavailable(f"pytriton has no Python-backend stub for Python {version}")
    shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
    return backends


class TritonServer:
    """A ``tritonserver`` process on loopback; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        model_repository: str | Path,
        python: str | Path | None = None,
        grpc_port: int | None = None,
        http_port: int | None = None,
        log_path: str | Path | None = None,
    ) -> None:
        python = python or os.environ.get(PYTHON_ENV)
        if not python:
            raise TritonUnavailable(f"set {PYTHON_ENV} to the python of an environment with nvidia-pytriton")
        self.python = Path(python)
        self.model_repository = Path(model_repository).resolve()
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.metrics_port = free_port()
        self._workdir = Path(tempfile.mkdtemp(prefix="streamdet-triton-"))
        self.log_path = Path(log_path) if log_path else self._workdir / "tritonserver.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self, backends: Path, server_dir: Path) -> list[str]:
        return [
            str(server_dir / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={self._workdir / 'caches'}",
            "--http-address=127.0.0.1", f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
            "--exit-on-error=true", "--strict-readiness=true", "--log-verbose=0", "--exit-timeout-secs=5",
        ]

    def environment(self, libs: Path) -> dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (env.get("LD_LIBRARY_PATH"), str(libs)) if p)
        # The Python-backend stub embeds libpython and finds its environment through PATH's python3.
        env["PATH"] = f"{self.python.parent}:{env.get('PATH', '')}"
        return env

    def start(self, timeout_s: float = 90.0) -> TritonServer:
        server_dir, libs, version = locate(self.python)
        backends = prepare_backends(server_dir, version, self._workdir)
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.process = subprocess.Popen(
            self.command(backends, server_dir), stdout=log, stderr=subprocess.STDOUT,
            env=self.environment(libs), start_new_session=True,
        )
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.http_port}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.process.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"tritonserver not ready after {timeout_s:.0f} s:\n{self.logs()}")

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 20.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout_s)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_repository", type=Path)
    parser.add_argument("--python", help=f"python of the pytriton environment (default: ${PYTHON_ENV})")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    args = parser.parse_args(argv)
    server = TritonServer(args.model_repository, args.python, args.grpc_port, args.http_port)
    try:
        server.start()
        print(f"tritonserver ready: grpc {server.grpc_url}, http 127.0.0.1:{server.http_port} (Ctrl-C stops)")
        while server.process is not None and server.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        print(server.logs()[-2000:] if server.process is None else "", end="")
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
