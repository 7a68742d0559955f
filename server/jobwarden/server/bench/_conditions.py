"""The conditions a figure was taken under: the machine, the software, the store."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

__all__ = ["machine_conditions"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_conditions() -> dict[str, Any]:
    """Cores, CPU model, load average, memory, Python and the versions the engine runs on."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    memory_gb = 0.0
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemTotal:"):
                    memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cores": os.cpu_count() or 0,
        "cpu": _cpu_model(),
        "load_average": load,
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "grpcio": _version("grpcio"),
        "protobuf": _version("protobuf"),
        "sqlalchemy": _version("SQLAlchemy"),
        "apscheduler": _version("APScheduler"),
        "jobwarden": _version("jobwarden"),
    }
