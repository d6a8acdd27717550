"""scripts/gpu_check.py runs end to end on CPU (``--device cpu --quick``), as a smoke test."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_gpu_check_smoke_on_cpu(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "report.json"
    assert gpu_check.main(["--device", "cpu", "--quick", "--batches", "1,2", "--seconds", "0", "--sweep", "2",
                           "--sweep-duration", "6", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["ok"] and report["device"] and report["batches"] == [1, 2]
    mel = report["models"]["mel_lcnn"]
    assert mel["checks"]["onnxruntime_cpu"]["max_abs_prob_diff"] <= 1e-4
    assert set(mel["windows_per_s"]) == {"torch_cpu_fp32", "onnxruntime_cpu"}
    assert all(rate > 0 for rates in mel["windows_per_s"].values() for rate in rates.values())
    # The service sweep ran a real server with that CM: both streams were scored, every window.
    sweep = report["service_sweep"]["report"]
    (step,) = sweep["steps"]
    assert step["streams"] == 2 and step["drops"]["total"] == 0 and step["windows_scored"] == step["windows_expected"] > 0
