"""``streamdet bench --ws-streams``: some of a step's streams as Twilio Media Streams calls over the
service's WebSocket ingest, measured like the ZeroMQ ones (a real ``streamdet serve`` subprocess)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from streamdet.bench import ws_load
from streamdet.cli import main
from streamdet.service.ingest import media_ws_messages


def test_media_messages_carry_20_ms_of_mulaw_each() -> None:
    audio = (0.2 * np.sin(np.arange(16_000) / 10)).astype(np.float32)  # 1 s at 16 kHz
    messages = [json.loads(m) for m in ws_load.media_messages("call-1/inbound", audio)]
    start = media_ws_messages.twilio_start(json.loads(ws_load.opening("call-1/inbound")[1]))
    assert start.call_id == "call-1" and len(messages) == 50
    track, samples = media_ws_messages.twilio_media(messages[0], start)
    assert track == "inbound" and samples.shape == (ws_load.FRAME, 1)


def test_some_streams_as_websocket_calls(mel_cm_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ws.json"
    main(["bench", "--engine", str(mel_cm_dir), "--streams", "3", "--ws-streams", "2", "--duration", "5",
          "--threads", "1", "--settle-s", "60", "--out", str(out)])
    report = json.loads(out.read_text())
    assert "--media-ws" in report["server"]["serve_args"] and report["config"]["ws_streams"] == 2
    step = report["steps"][0]
    assert step["ws_streams"] == 2 and step["ws_errors"] == [] and step["streams_ended"] == 3
    assert step["windows_scored"] == step["windows_expected"] >= 6 and step["drops"]["total"] == 0
    by_transport = step["latency_ms_by_transport"]
    assert by_transport["zmq"]["count"] == 2 and by_transport["media_ws"]["count"] == step["windows_scored"] - 2
    assert step["unmatched_scores"] == 0


def test_ws_and_whip_streams_cannot_outnumber_the_streams(mel_cm_dir: Path, capsys) -> None:
    assert main(["bench", "--engine", str(mel_cm_dir), "--streams", "2", "--ws-streams", "3"]) == 2
    assert "--ws-streams" in capsys.readouterr().err
