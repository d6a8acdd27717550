"""Ingest plugins: a toy protocol (toy_ingest.py) plugged in with one registration, started from
settings, fed, scored, described and stopped; the built-ins described by ``/info`` and the metrics."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from streamdet.errors import ConfigError
from streamdet.service.ingest import plugins
from streamdet.service.server import Service
from streamdet.service.settings import load_settings

_spec = importlib.util.spec_from_file_location("streamdet_tests_toy_ingest", Path(__file__).with_name("toy_ingest.py"))
toy = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = toy  # dataclasses and pydantic look their module up by name
_spec.loader.exec_module(toy)


async def send_lines(port: int, stream_id: str, samples: np.ndarray, end: bool = True) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for start in range(0, len(samples), 1_600):
        chunk = " ".join(f"{x:.6f}" for x in samples[start:start + 1_600, 0])
        writer.write(f"{stream_id} {chunk}\n".encode())
    if end:
        writer.write(f"{stream_id} END\n".encode())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_a_toy_ingest_is_started_from_settings_scored_described_and_stopped(kit) -> None:
    with plugins.registered(toy.PLUGIN):
        settings = load_settings(None, kit.loopback_overrides(ingests={"toy": {"enabled": True}}))
        service = Service(settings, kit.FakeScorer(p_bonafide=0.1))
        await service.start()
        try:
            adapter = service.ingests["toy"]
            assert list(service.ingests) == ["zmq", "whip", "toy"]
            listener = service.listen("score.toy-1")
            await send_lines(adapter.port, "toy-1", kit.tone(5.0))
            events = await kit.collect_until_end(listener, "toy-1")
            assert [e.event for e in events] == ["score", "score", "end"]
            assert events[0].p_spoof == pytest.approx(0.9) and events[-1].reason == "end"

            status, body = await kit.http_get(service, "/info")
            assert status == 200
            described = {i["name"]: i for i in json.loads(body)["ingests"]}
            assert described["toy"] == {"name": "toy", "protocol": "toy-lines",
                                        "endpoint": f"tcp://127.0.0.1:{adapter.port}"}
            _, metrics = await kit.http_get(service, "/metrics")
            assert f'streamdet_ingest_info{{endpoint="tcp://127.0.0.1:{adapter.port}",name="toy",' \
                   f'protocol="toy-lines"}} 1.0' in metrics
        finally:
            await service.stop()
        assert adapter.stopped
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", adapter.port)
    assert "toy" not in [p.name for p in plugins.registered_plugins()]  # the registration is undone


async def test_a_registered_plugin_stays_off_unless_its_settings_enable_it(kit) -> None:
    with plugins.registered(toy.PLUGIN):
        service = Service(load_settings(None, kit.loopback_overrides()), kit.FakeScorer())
        assert "toy" not in service.ingests


def test_plugin_settings_come_from_toml_and_are_validated_by_the_plugin(tmp_path: Path, kit, monkeypatch) -> None:
    monkeypatch.setenv("STREAMDET_INGESTS__TOY__SAMPLE_RATE", "8000")
    config = tmp_path / "serve.toml"
    config.write_text('[ingest]\nendpoint = "tcp://127.0.0.1:*"\n[ingests.toy]\nenabled = true\nport = 7\n')
    with plugins.registered(toy.PLUGIN):
        settings = load_settings(config)
        assert settings.ingest.endpoint == "tcp://127.0.0.1:*"  # the built-ins' tables are unchanged
        assert toy.PLUGIN.section_of(settings) == toy.ToySettings(enabled=True, port=7, sample_rate=8000)
        with pytest.raises(ConfigError, match=r"\[ingests.toy\]"):
            Service(load_settings(None, {"ingests": {"toy": {"port": "not a port"}}}), kit.FakeScorer())
    with pytest.raises(ConfigError, match="no ingest plugin"):  # unregistered: its table names nothing
        Service(load_settings(config), kit.FakeScorer())


def test_a_name_registers_once() -> None:
    with plugins.registered(toy.PLUGIN), pytest.raises(ValueError, match="already registered"):
        plugins.register(toy.PLUGIN)
    assert [p.name for p in plugins.registered_plugins()] == [
        "zmq", "whip", "media_ws", "broadcast", "rtp", "audiosocket"]  # the built-ins, in start order


async def test_info_and_metrics_describe_the_built_in_ingests(start_service, kit) -> None:
    service = await start_service(whip={"token": "t"})
    status, body = await kit.http_get(service, "/info")
    info = json.loads(body)
    assert status == 200 and info["model_id"] == "fake@0" and info["events_endpoint"] == service.events_endpoint
    assert info["ingests"] == [
        {"name": "zmq", "protocol": "zeromq", "endpoint": service.ingest_endpoint, "auth": "none"},
        {"name": "whip", "protocol": "whip", "endpoint": "/whip/<stream_id>", "auth": "bearer"},
    ]
    _, metrics = await kit.http_get(service, "/metrics")
    assert f'streamdet_ingest_info{{auth="none",endpoint="{service.ingest_endpoint}",name="zmq",' \
           f'protocol="zeromq"}} 1.0' in metrics


async def test_the_zeromq_ingest_can_be_turned_off(start_service, kit) -> None:
    service = await start_service(ingest={"enabled": False})
    assert list(service.ingests) == ["whip"] and service.ingest_endpoint is None
    info = json.loads((await kit.http_get(service, "/info"))[1])
    assert [i["name"] for i in info["ingests"]] == ["whip"]
