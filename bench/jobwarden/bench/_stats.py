"""Percentiles and the CPU a process (and each of its threads) spent."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["CpuMeter", "GcMeter", "MachineMeter", "percentiles", "process_cpu_seconds", "rss_bytes"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def percentiles(values: Iterable[float], scale: float = 1.0) -> dict[str, float]:
    """count, p50, p90, p99 and max of ``values`` (times ``scale``, e.g. 1000 for ms); NaN when empty."""
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        nan = float("nan")
        return {"count": 0, "p50": nan, "p90": nan, "p99": nan, "max": nan}

    def at(q: float) -> float:
        return ordered[min(n - 1, int(q * n))] * scale

    return {"count": n, "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1] * scale}


def rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process (this one by default), from /proc; 0 where there is no /proc."""
    try:
        with open(f"/proc/{pid or 'self'}/status") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far; 0.0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


class GcMeter:
    """The garbage collector's pauses in this process between ``start()`` and ``stop()``: how many
    collections of each generation, their total and their longest pause."""

    def __init__(self) -> None:
        self._began = 0.0
        self._generation = 0
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            self._generation = info.get("generation", 0)
        elif self._began:
            self.pauses[self._generation].append(time.perf_counter() - self._began)
            self._began = 0.0

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> dict[str, float]:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        out: dict[str, float] = {}
        for generation, pauses in self.pauses.items():
            out[f"gen{generation}_count"] = len(pauses)
            out[f"gen{generation}_ms_total"] = round(1000 * sum(pauses), 1)
            out[f"gen{generation}_ms_max"] = round(1000 * max(pauses, default=0.0), 1)
        return out


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as file:
            values = [int(v) for v in file.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


class MachineMeter:
    """How busy the whole machine was (every process, other users' too) between start and stop."""

    def __init__(self) -> None:
        self._start = (0, 0)

    def start(self) -> None:
        self._start = _machine_ticks()

    def stop(self) -> float:
        """Busy share of all cores, in percent (100 = every core busy the whole time)."""
        busy, total = _machine_ticks()
        spent = total - self._start[1]
        return 100.0 * (busy - self._start[0]) / spent if spent > 0 else float("nan")


def _thread_ticks() -> dict[int, int]:
    ticks: dict[int, int] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return ticks
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime and stime are fields 14 and 15 of stat; after the ")" they are at 11 and 12.
        ticks[int(tid)] = int(fields[11]) + int(fields[12])
    return ticks


@dataclass(slots=True)
class CpuUse:
    wall_seconds: float
    cpu_seconds: float
    #: CPU seconds per thread group: the event loop, the store writer, readers, gRPC's own threads
    threads: dict[str, float]

    @property
    def percent(self) -> float:
        return 100.0 * self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def thread_percent(self) -> dict[str, float]:
        if self.wall_seconds <= 0:
            return {}
        return {name: round(100.0 * s / self.wall_seconds, 1) for name, s in sorted(self.threads.items())}


class CpuMeter:
    """CPU of this process between ``start()`` and ``stop()``, split by thread where /proc allows."""

    def __init__(self) -> None:
        self._wall = 0.0
        self._cpu = 0.0
        self._ticks: dict[int, int] = {}

    def start(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        self._ticks = _thread_ticks()

    def stop(self) -> CpuUse:
        wall = time.perf_counter() - self._wall
        cpu = time.process_time() - self._cpu
        after = _thread_ticks()
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        main = threading.main_thread().native_id
        groups: dict[str, float] = {}
        for tid, ticks in after.items():
            spent = (ticks - self._ticks.get(tid, 0)) / _TICK
            if spent <= 0:
                continue
            group = _group(names.get(tid), tid == main)
            groups[group] = groups.get(group, 0.0) + spent
        return CpuUse(wall_seconds=wall, cpu_seconds=cpu, threads=groups)


def _group(name: str | None, is_main: bool) -> str:
    if is_main:
        return "event loop"
    if name is None:
        return "grpc core"
    for prefix, group in (("jobwarden-writer", "store writer"), ("jobwarden-reader", "store readers")):
        if name.startswith(prefix):
            return group
    return "other python"


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
