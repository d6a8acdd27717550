"""The README's model-only benchmark command runs as written (shortened: one batch size, two repeats)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def readme_command(prefix: str) -> list[str]:
    """The README's command line starting with ``prefix``, without its comment."""
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith(prefix):
            return shlex.split(line.split("#", 1)[0])
    raise AssertionError(f"README.md has no line starting with {prefix!r}")


def test_readme_model_only_w2v2_command_exits_0(tmp_path: Path):
    command = readme_command("streamdet bench --model-only --arch w2v2_aasist")
    assert command[0] == "streamdet"
    out = tmp_path / "model_only.json"
    # Offline hub: the random XLS-R 300M-shaped front-end must be built locally, never downloaded.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", *command, "--batch-sizes", "1", "--threads", "1", "--repeats", "2", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["candidates"][0]["architecture"] == "w2v2_aasist"
    assert report["candidates"][0]["w2v2_source"] == "random XLS-R 300M shape"
    assert [row["batch_size"] for row in report["rows"]] == [1]
    assert "windows/s" in done.stdout
