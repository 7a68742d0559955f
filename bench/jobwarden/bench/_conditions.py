"""The conditions a figure was taken under: the machine, the software, the store."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
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


def source_revision() -> str:
    """The git commit the engine's code comes from (with "+changes" when its files are modified);
    outside a git checkout, ``$JOBWARDEN_REVISION`` or ""."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        # A copy of the code (e.g. from git archive) can say where it came from.
        return os.environ.get("JOBWARDEN_REVISION", "")
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--",
                "server",
                "sdk",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{head}+changes" if changed else head


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
        "revision": source_revision(),
    }
