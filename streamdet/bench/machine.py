"""What a benchmark ran on, and waiting for a quiet machine before measuring."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def cpu_model() -> str:
    """``lscpu``'s model name (falls back to /proc/cpuinfo, then to platform.processor())."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded."""
    return [round(value, 2) for value in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    """CPU, cores, library versions and the moment of measurement, for every JSON report."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_default_threads": torch.get_num_threads(),
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(arg) for arg in sys.argv),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info


def wait_for_quiet(max_load: float, timeout_s: float, poll_s: float = 60.0,
                   say: Callable[[str], None] = print) -> list[float]:
    """Wait until the 1-minute load average is at most ``max_load`` (or ``timeout_s`` passed).

    Returns the load average when it stopped waiting; measuring on a busy shared machine gives
    numbers nobody can reproduce, so the reports record this value either way.
    """
    deadline = time.monotonic() + timeout_s
    load = load_average()
    while load[0] > max_load and time.monotonic() < deadline:
        say(f"load average {load[0]:.2f} > {max_load:.2f}: waiting {poll_s:.0f} s")
        time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))
        load = load_average()
    if load[0] > max_load:
        say(f"load average still {load[0]:.2f} after {timeout_s:.0f} s: measuring anyway (recorded)")
    return load
