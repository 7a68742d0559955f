"""``jobwarden demo``: an engine, demo workers and a trickle of jobs and work orders, as processes,
and the console.

Everything runs as it would in production, only smaller: ``jobwarden serve`` on a free port with a
SQLite file in a temporary directory, ``jobwarden worker`` processes running the demo executors,
and a client process submitting jobs. The console talks to them over gRPC like to any engine.
Leaving the demo stops every process it started and removes the directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import grpc
from jobwarden.v1 import executor_service_pb2, executor_service_pb2_grpc

#: seconds to wait for the engine to listen and the workers to register
START_TIMEOUT = 60.0
#: (name, the executors' module:attribute, capacity)
_WORKERS = (
    ("demo-worker-1", "executors:WORKER_ONE", 16),
    ("demo-worker-2", "executors:WORKER_TWO", 10),
    ("demo-media", "media:MEDIA_WORKER", 12),
)


class DemoError(RuntimeError):
    """The demo could not start; the message says which part and where its log is."""


class Demo:
    """The demo's processes. ``with Demo() as demo:`` starts them all; leaving stops them all.

    On Linux the processes also get SIGTERM if the thread that started them ends, so that a demo
    killed outright leaves nothing behind: start it from a thread that lives as long as the demo.
    """

    def __init__(self, *, port: int = 0, rate: float = 1.5, directory: Path | None = None) -> None:
        self.port = port or _free_port()
        self.rate = rate
        self._own_directory = directory is None
        self._made_directory = False
        self.directory = directory or Path()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.directory / 'demo.db'}"

    def __enter__(self) -> Demo:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._own_directory:
            self.directory = Path(tempfile.mkdtemp(prefix="jobwarden-demo-"))
            self._made_directory = True
        try:
            self._start_engine()
            for name, attribute, capacity in _WORKERS:
                self._spawn(
                    name,
                    [
                        "worker",
                        f"jobwarden.tui.demo.{attribute}",
                        "--engine",
                        self.address,
                        "--name",
                        name,
                        "--capacity",
                        str(capacity),
                        "--drain-timeout",
                        "1",
                        "--cancel-grace",
                        "1",
                        "--log-level",
                        "WARNING",
                    ],
                )
            self._wait_for_workers(len(_WORKERS))
            self._spawn(
                "trickle",
                ["-m", "jobwarden.tui.demo._trickle", "--engine", self.address, "--rate", str(self.rate)],
                module=True,
            )
        except BaseException:
            # Keep the directory: its logs say why a part did not start.
            self.stop(keep_directory=True)
            raise

    def stop(self, *, keep_directory: bool = False) -> None:
        """Stop the trickle and the workers, then the engine (so the workers can say goodbye to it);
        remove the directory unless told to keep it."""
        clients = ["trickle", *(name for name, _, _ in _WORKERS)]
        self._terminate(clients, wait=5.0)
        self._terminate(["engine"], wait=10.0)
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._made_directory and not keep_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        self._made_directory = False

    def _terminate(self, names: list[str], *, wait: float) -> None:
        running = [self.processes[name] for name in names if name in self.processes]
        for process in running:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + wait
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def _start_engine(self) -> None:
        process = self._spawn(
            "engine",
            ["serve", "--port", str(self.port), "--db", self.db_url, "--log-level", "WARNING"],
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if b"listening on" in line:
                # Nothing else is read from it: let it go to the log from here on.
                return
            if not line and process.poll() is not None:
                break
        raise DemoError(f"the engine did not start; see {self.directory / 'engine.log'}")

    def _wait_for_workers(self, count: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with grpc.insecure_channel(self.address) as channel:
            stub = executor_service_pb2_grpc.ExecutorServiceStub(channel)
            while time.monotonic() < deadline:
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        raise DemoError(f"{name} exited at start; see {self.directory / (name + '.log')}")
                with contextlib.suppress(grpc.RpcError):
                    workers = stub.ListWorkers(executor_service_pb2.ListWorkersRequest(), timeout=5).workers
                    if len(workers) >= count:
                        return
                time.sleep(0.1)
        raise DemoError(f"the demo workers did not connect; see the logs in {self.directory}")

    def _spawn(
        self, name: str, arguments: list[str], *, module: bool = False, stdout: int | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.directory / f"{name}.log", "ab")  # noqa: SIM115 (closed in stop)
        self._logs.append(log)
        command = (
            [sys.executable, *arguments]
            if module
            else [sys.executable, "-m", "jobwarden.sdk.cli", *arguments]
        )
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            # Their own session: Ctrl+C in the console's terminal is the console's to handle.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.processes[name] = process
        return process


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the demo dies, even by SIGKILL (no orphans left behind)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_demo(*, port: int = 0, rate: float = 1.5, console: bool = True) -> int:
    """Start the demo, open the console on it (or wait for Ctrl+C), and stop it all afterwards."""
    demo = Demo(port=port, rate=rate)
    print(f"jobwarden demo: starting an engine, {len(_WORKERS)} workers and a trickle of jobs…", flush=True)
    try:
        demo.start()
    except DemoError as error:
        print(f"jobwarden demo: {error}", file=sys.stderr)
        return 1
    try:
        print(
            f"jobwarden demo: engine on {demo.address} (SQLite in {demo.directory}); "
            f"{len(_WORKERS)} workers; about {rate:g} jobs a second.",
            flush=True,
        )
        if console:
            from jobwarden.tui._app import ConsoleApp

            ConsoleApp(demo.address, engine_label=f"demo engine {demo.address}").run()
        else:
            print("jobwarden demo: running without the console; Ctrl+C stops it.", flush=True)
            stop_signals = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
            signal.sigwait(stop_signals)
    finally:
        demo.stop()
        print("jobwarden demo: stopped the engine, the workers and the trickle.", flush=True)
    return 0


__all__ = ["Demo", "DemoError", "run_demo"]
