"""A real ``jobwarden serve`` in its own process, for tests that kill it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .net import free_port


class EngineProcess:
    #: every engine process started and not yet stopped: the test fixtures kill what a test leaves behind
    live: set[EngineProcess] = set()

    def __init__(
        self,
        db_url: str,
        *,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.db_url = db_url
        self.port = port or free_port()
        self.extra_args = extra_args
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> EngineProcess:
        command = [
            sys.executable,
            "-m",
            "jobwarden.sdk.cli",
            "serve",
            "--port",
            str(self.port),
            "--db",
            self.db_url,
            *self.extra_args,
        ]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, env={**os.environ, **(self.env or {})}
        )
        EngineProcess.live.add(self)
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if b"listening on" in line or not line:
                break
        if b"listening on" not in line:
            self.kill()
            raise RuntimeError(f"engine did not start (exit {self.process.poll()}): {line!r}")
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        EngineProcess.live.discard(self)

    def terminate(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        EngineProcess.live.discard(self)

    def restart(self) -> EngineProcess:
        self.kill()
        return self.start()

    def __enter__(self) -> EngineProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.terminate()
