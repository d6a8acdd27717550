"""``streamdet bench --model-only``: JSON and table for random-weight CMs and for engines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamdet.cli import main

ROW_FIELDS = {"label", "backend", "threads", "workers", "batch_size", "windows_per_s", "seconds_per_batch", "repeats", "times_s"}


def test_model_only_arch_reports_every_layout_thread_count_and_batch(tmp_path: Path, capsys):
    out = tmp_path / "mo.json"
    assert main(["bench", "--model-only", "--arch", "mel_lcnn", "--batch-sizes", "1,2", "--threads", "1",
                 "--channels-last", "both", "--workers", "1,2", "--repeats", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["kind"] == "model_only" and report["version"] == 1
    assert {"cpu_model", "cpus", "torch"} <= set(report["machine"])
    assert len(report["loadavg_before"]) == 3
    rows = report["rows"]
    assert {(r["label"], r["workers"], r["batch_size"]) for r in rows} == {
        (label + (" x2 workers" if w == 2 else ""), w, b)
        for label in ("torch-channels-last", "torch-nchw") for w in (1, 2) for b in (1, 2)}
    for row in rows:
        assert ROW_FIELDS <= set(row) and row["threads"] == 1 and row["windows_per_s"] > 0
        assert row["repeats"] == len(row["times_s"]) >= 2
    assert report["best"] in rows
    printed = capsys.readouterr().out
    assert "windows/s" in printed and "b=2" in printed


def test_model_only_arch_refuses_onnxruntime_with_a_hint(capsys):
    assert main(["bench", "--model-only", "--arch", "mel_lcnn", "--backend", "onnxruntime"]) == 2
    assert "offline export" in capsys.readouterr().err


def test_model_only_needs_an_engine_or_an_arch(capsys):
    assert main(["bench", "--model-only"]) == 2
    assert "--engine" in capsys.readouterr().err


@pytest.fixture(scope="module")
def mel_onnx_dir(mel_cm_dir: Path, tmp_path_factory) -> Path:
    pytest.importorskip("onnxscript")
    from offline.export.onnx import export_onnx

    out = tmp_path_factory.mktemp("bench_engines") / "mel-onnx"
    export_onnx(mel_cm_dir, out)
    return out


def test_model_only_times_torch_and_onnxruntime_engines(mel_cm_dir: Path, mel_onnx_dir: Path, tmp_path: Path):
    out = tmp_path / "engines.json"
    assert main(["bench", "--model-only", "--engine", str(mel_cm_dir), "--engine", str(mel_onnx_dir),
                 "--backend", "torch,onnxruntime", "--batch-sizes", "2", "--threads", "1", "--repeats", "2",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {r["backend"] for r in report["rows"]} == {"torch", "onnxruntime"}
    assert {c["backend"] for c in report["candidates"]} == {"torch", "onnxruntime"}


def test_model_only_refuses_an_engine_of_an_unrequested_backend(mel_cm_dir: Path, capsys):
    assert main(["bench", "--model-only", "--engine", str(mel_cm_dir), "--backend", "onnxruntime"]) == 2
    assert "offline export" in capsys.readouterr().err


@pytest.mark.parametrize(("choice", "label", "setting"), [("on", "torch traced", True), ("off", "torch eager", False)])
def test_model_only_trace_choice(mel_cm_dir: Path, tmp_path: Path, choice: str, label: str, setting: bool):
    out = tmp_path / "trace.json"
    assert main(["bench", "--model-only", "--engine", str(mel_cm_dir), "--backend", "torch", "--batch-sizes", "1",
                 "--threads", "1", "--repeats", "2", "--trace", choice, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["label"] for r in report["rows"]] == [label] and report["config"]["trace"] == choice
    assert report["candidates"][0]["trace"] is setting
