"""``streamdet demo`` as a user runs it: a subprocess, the shipped CM, the bundled clips, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import soundfile as sf

from streamdet.demo.samples import SAMPLES, SAMPLES_DIR

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _env() -> dict[str, str]:
    # The demo must work with the shipped CM whatever the caller's environment points the service at.
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMDET_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def _lines_of(stdout: str, stream_id: str, event: str) -> list[str]:
    return [line for line in stdout.splitlines() if re.search(rf"\s{re.escape(stream_id)}\s+{event}\s", line)]


def test_bundled_samples_exist_with_their_attribution() -> None:
    attribution = (SAMPLES_DIR / "ATTRIBUTION.md").read_text()
    assert {s.label for s in SAMPLES} == {"genuine", "synthetic"}
    for sample in SAMPLES:
        assert sample.stream_id.startswith(sample.label + "-")
        assert sf.info(str(sample.path)).duration > 5.0  # long enough for the 2-of-3 rule to raise
        assert sample.file in attribution
    assert sum(s.path.stat().st_size for s in SAMPLES) < 1_000_000


def test_demo_alerts_on_the_synthetic_clips_only_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "streamdet", "demo", "--out", str(out)], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    for sample in SAMPLES:
        assert _lines_of(done.stdout, sample.stream_id, "score"), done.stdout
        raised = _lines_of(done.stdout, sample.stream_id, "raised")
        assert bool(raised) == sample.expect_alert, (sample.stream_id, done.stdout)

    report = json.loads((out / "report.json").read_text())
    streams = {s["stream_id"]: s for s in report["streams"]}
    assert set(streams) == {s.stream_id for s in SAMPLES}
    for sample in SAMPLES:
        summary = streams[sample.stream_id]
        assert summary["verdict"] == ("alert" if sample.expect_alert else "no alert")
        assert summary["correct"] is True
        assert (summary["first_alert_s"] is not None) == sample.expect_alert
        assert 0.0 <= summary["max_p_spoof"] <= 1.0
        assert summary["windows"] >= 3 and summary["dropped"] == 0
        assert (out / summary["timeline_png"]).read_bytes().startswith(PNG_MAGIC)
    markdown = (out / "report.md").read_text()
    assert all(sample.stream_id in markdown for sample in SAMPLES)
    assert f"report: {out / 'report.md'}" in done.stdout


async def test_demo_keep_serves_the_page_until_sigterm(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamdet", "demo", "--keep", "--out", str(tmp_path / "report"), cwd=tmp_path,
        env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        page = None
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 180)).decode()
            assert line, "the demo exited before it said the service keeps running"
            if line.startswith("the service keeps running"):
                page = re.search(r"page (http://\S+/)", line).group(1)
                break
        async with aiohttp.ClientSession() as session, session.get(page) as response:
            assert response.status == 200
            assert "text/html" in response.headers["Content-Type"]
        assert (tmp_path / "report" / "report.json").is_file()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
