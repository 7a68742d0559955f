"""Fixtures of the SDK tests: workers in real processes, a connected client, waiting helpers.

The engine itself comes from the ``engine`` fixture of ``tests/conftest.py`` (a real engine in the
test's event loop on a free port).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, overload

import pytest
from jobwarden.contract import TERMINAL_STATUSES, JobStatus
from jobwarden.sdk import JobClient
from jobwarden.v1 import job_pb2

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
#: the installed ``jobwarden`` command, as a user runs it
JOBWARDEN = str(Path(sys.executable).with_name("jobwarden"))
T = TypeVar("T")


@overload
async def wait_until(
    predicate: Callable[[], Awaitable[T | None]], *, within: float = 30.0, what: str = "a condition"
) -> T: ...
@overload
async def wait_until(
    predicate: Callable[[], T | None], *, within: float = 30.0, what: str = "a condition"
) -> T: ...
async def wait_until(
    predicate: Callable[[], Awaitable[T | None] | T | None],
    *,
    within: float = 30.0,
    what: str = "a condition",
) -> T:
    """Poll ``predicate`` (sync or async) until it returns something truthy, and return it."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_status(
    client: JobClient, job_id: str, *statuses: JobStatus, within: float = 30.0
) -> job_pb2.Job:
    """The job once its status is one of ``statuses`` (any terminal one when none are given)."""
    wanted = set(statuses) or set(TERMINAL_STATUSES)

    async def check() -> job_pb2.Job | None:
        job = await client.get(job_id)
        return job if JobStatus(job.status) in wanted else None

    try:
        return await wait_until(
            check, within=within, what=f"job {job_id} to be {sorted(s.name for s in wanted)}"
        )
    except AssertionError as error:
        job = await client.get(job_id)
        raise AssertionError(f"{error}; it is {JobStatus(job.status).name}: {job}") from None


def read_trace(path: Path) -> list[str]:
    """The trace lines, without the pid (``"step one attempt=1 mode=EXECUTE"``)."""
    if not path.exists():
        return []
    return [line.rsplit(" pid=", 1)[0] for line in path.read_text().splitlines()]


class WorkerProcess:
    """``jobwarden worker sdk_executors:ALL`` in its own process, its output in a log file."""

    def __init__(
        self,
        address: str,
        log: Path,
        *,
        target: str = "sdk_executors:ALL",
        args: tuple[str, ...] = (),
        cwd: Path = HERE,
    ) -> None:
        self.log = log
        self.name = f"test-worker-{log.stem}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        command = [JOBWARDEN, "worker", target, "--engine", address]
        command += ["--name", self.name, *args]
        self._file = log.open("wb")
        self.process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=self._file, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def connected(self, client: JobClient, within: float = 30.0) -> None:
        async def registered() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.output()}")
            return any(worker.name == self.name for worker in await client.workers())

        await wait_until(registered, within=within, what=f"worker {self.name} to register")

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.process.wait(10)

    async def exited(self, within: float = 30.0) -> int:
        await wait_until(lambda: self.process.poll() is not None, within=within, what="the worker to exit")
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._file.close()


@pytest.fixture
def workers(engine: Any, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes against the test's engine: ``workers("--capacity", "2")``."""
    started: list[WorkerProcess] = []

    def start(
        *args: str, target: str = "sdk_executors:ALL", address: str | None = None, cwd: Path = HERE
    ) -> WorkerProcess:
        worker = WorkerProcess(
            address or engine.address,
            tmp_path / f"worker{len(started)}.log",
            target=target,
            args=args,
            cwd=cwd,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


@pytest.fixture
async def client(engine: Any) -> AsyncIterator[JobClient]:
    async with JobClient(engine.address) as connected:
        yield connected


class TcpProxy:
    """A TCP relay in front of the engine whose connections a test can cut, as a network fault would.

    New connections are relayed again right after a cut, so a client that reconnects gets through.
    """

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        #: while True, bytes from the client to the engine are dropped (a half-dead network)
        self.hold_upstream = False

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, upstream: bool) -> None:
            try:
                while data := await source.read(65536):
                    if upstream and self.hold_upstream:
                        continue  # swallowed: as if the network lost it
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        """Break every relayed connection at once."""
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def proxy(engine: Any) -> AsyncIterator[tuple[TcpProxy, str]]:
    relay = TcpProxy(engine.address)
    address = await relay.start()
    yield relay, address
    await relay.close()
