"""The machine a benchmark ran on, as recorded with its results: CPU, cores, RAM, load, Python
and the versions of the packages that matter to that benchmark."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def describe(packages: Iterable[str]) -> dict[str, Any]:
    """CPU model, cores, RAM, Python, platform, 1/5/15-minute load and `packages`' versions ("-": absent)."""
    from importlib import metadata

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        ram = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except ImportError:
        ram = "?"
    pkgs = {}
    for p in packages:
        try:
            pkgs[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pkgs[p] = "-"
    return {"cpu": cpu, "cores": os.cpu_count(), "ram": ram, "python": platform.python_version(),
            "platform": platform.platform(), "load": load(), "packages": pkgs}


def load() -> list[float]:
    """The 1/5/15-minute load average (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return []
