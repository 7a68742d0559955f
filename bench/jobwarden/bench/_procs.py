"""The processes around the engine: worker processes (``jobwarden worker``), client agents
(``_agent.py``), and py-spy. All are started with asyncio so the engine, which may share this
process's event loop, never waits on them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

from ._stats import process_cpu_seconds

__all__ = ["Agent", "Profiler", "WorkerGroup", "open_log", "profiling", "run_json_command"]

_EXECUTORS = "jobwarden.bench._executors"


def open_log(path: Path) -> Any:
    """A file for a child process's output (opened for the child; the caller closes its copy)."""
    return open(path, "ab")


@dataclass(slots=True)
class WorkerGroup:
    """``count`` worker processes of ``capacity`` each, running ``executor`` (``Noop``, ``Stamp``,
    ``Hang``) for ``action``; their output goes to a log file in ``workdir``."""

    address: str
    action: str
    _: KW_ONLY
    count: int
    capacity: int
    workdir: Path
    executor: str = "Noop"
    stamps: Path | None = None
    processes: list[asyncio.subprocess.Process] = field(default_factory=list, init=False)

    async def start(self) -> None:
        env = {**os.environ, "JOBWARDEN_BENCH_ACTION": self.action}
        if self.stamps is not None:
            env["JOBWARDEN_BENCH_STAMPS"] = str(self.stamps)
        for index in range(self.count):
            log = open_log(self.workdir / f"worker-{self.action}-{index}.log")
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "jobwarden.sdk.cli", "worker", f"{_EXECUTORS}:{self.executor}",
                    "--engine", self.address, "--capacity", str(self.capacity),
                    "--name", f"bench-{self.executor.lower()}-{index}", "--log-level", "WARNING",
                    "--drain-timeout", "5",
                    stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                )  # fmt: skip
            finally:
                log.close()
            self.processes.append(process)

    async def stop(self) -> None:
        """SIGTERM (the worker drains), or SIGKILL for ``Hang`` workers, whose jobs never end."""
        stop = signal.SIGKILL if self.executor == "Hang" else signal.SIGTERM
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(stop)
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self.processes.clear()

    def cpu_seconds(self) -> float:
        """CPU seconds the worker processes have used so far."""
        return sum(process_cpu_seconds(p.pid) for p in self.processes if p.returncode is None)

    def failed(self) -> str | None:
        """A line about a worker process that already exited, if one did."""
        for index, process in enumerate(self.processes):
            if process.returncode is not None:
                log = self.workdir / f"worker-{self.action}-{index}.log"
                tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
                return f"worker process {index} exited with {process.returncode}: {tail.strip()}"
        return None


class Agent:
    """One client process (``_agent.py``): started with ``start()`` (returns once it is connected),
    ``result()`` waits for its JSON line."""

    def __init__(self, role: str, spec: dict[str, Any]) -> None:
        self.role = role
        self.spec = spec
        self.process: asyncio.subprocess.Process | None = None
        self._stderr: asyncio.Task[bytes] | None = None

    async def start(self, timeout: float = 60.0) -> Agent:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jobwarden.bench._agent", self.role, json.dumps(self.spec),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            limit=64 << 20,
        )  # fmt: skip
        assert self.process.stderr is not None
        self._stderr = asyncio.create_task(self.process.stderr.read())
        line = await asyncio.wait_for(self._readline(), timeout)
        if line.strip() != "ready":
            raise RuntimeError(
                f"bench agent {self.role} did not start: {line.strip()} {await self._errors()}"
            )
        return self

    async def _readline(self) -> str:
        assert self.process is not None
        assert self.process.stdout is not None
        return (await self.process.stdout.readline()).decode()

    async def _errors(self) -> str:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5)
        if self._stderr is None:
            return ""
        with contextlib.suppress(TimeoutError):
            return (await asyncio.wait_for(self._stderr, 5)).decode(errors="replace")[-2000:]
        return ""

    async def send(self, line: str) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def result(self, timeout: float = 600.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self._readline(), timeout)
        if not line.startswith("{"):
            raise RuntimeError(f"bench agent {self.role} failed: {await self._errors()}")
        result: dict[str, Any] = json.loads(line)
        assert self.process is not None
        await asyncio.wait_for(self.process.wait(), 30)
        return result

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


async def run_json_command(
    command: list[str], *, timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``command``; its last stdout line that is a JSON object (RuntimeError if it failed)."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"{' '.join(command[:4])} ... took more than {timeout:g}s") from None
    lines = [line for line in stdout.decode().splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        errors = stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({process.returncode}): {errors}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class Profiler:
    """py-spy sampling this process while a scenario measures (``--profile FILE``)."""

    def __init__(self, output: Path, *, rate: int = 100, gil: bool = False) -> None:
        self.output = output
        self.rate = rate
        #: sample only the thread holding the GIL: where the engine's one usable core goes
        self.gil = gil
        self.process: asyncio.subprocess.Process | None = None

    @staticmethod
    def available() -> str | None:
        """py-spy's path: on PATH, or beside this Python (a venv's bin)."""
        beside = Path(sys.executable).parent / "py-spy"
        return shutil.which("py-spy") or (str(beside) if beside.exists() else None)

    async def start(self) -> None:
        binary = self.available()
        if binary is None:
            raise RuntimeError("--profile needs py-spy (pip install py-spy)")
        fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(self.output.suffix, "raw")
        self.process = await asyncio.create_subprocess_exec(
            binary, "record", "--pid", str(os.getpid()), "--rate", str(self.rate), "--format", fmt,
            "--output", str(self.output), "--threads", "--nonblocking", *(["--gil"] if self.gil else []),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(0.5)  # py-spy attaches

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.process.wait(), 60)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@contextlib.asynccontextmanager
async def profiling(profiler: Profiler | None) -> AsyncIterator[None]:
    """``profiler`` sampling for the ``async with`` block, or nothing when ``--profile`` was not
    given (``profiler`` None)."""
    if profiler is None:
        yield
        return
    await profiler.start()
    try:
        yield
    finally:
        await profiler.stop()
