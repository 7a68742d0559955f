"""What ``jobwarden serve`` prints, as an operator sees it: a real engine process."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobwarden.sdk import JobClient

from tests.support import free_port


def _serve(db: Path, port: int, *args: str, **popen: object) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "jobwarden.sdk.cli", "serve", "--port", str(port)]
    return subprocess.Popen([*command, "--db", f"sqlite:///{db}", *args], **popen)  # type: ignore[call-overload, no-any-return]


async def _run_with_a_timer(tmp_path: Path, *args: str) -> tuple[str, str]:
    """Start the engine, arm a timer (a job that runs later), stop it; its stdout and stderr."""
    port = free_port()
    process = _serve(tmp_path / "jw.db", port, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        first = process.stdout.readline().decode()
        assert "listening on" in first, first
        async with JobClient(f"127.0.0.1:{port}") as client:
            await client.submit("later", run_at=datetime.now(UTC) + timedelta(hours=1))
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return first + out.decode(), err.decode()


async def test_apscheduler_is_quiet_unless_debug(tmp_path: Path) -> None:
    out, err = await _run_with_a_timer(tmp_path)
    assert " apscheduler." not in err, err
    assert out.count("listening on") == 1
    assert err.count("listening on") == 1, "the log says it too, with the store and security"

    again = tmp_path / "debug"
    again.mkdir()
    _, debug = await _run_with_a_timer(again, "--log-level", "DEBUG")
    assert " apscheduler." in debug


async def test_one_listening_line_at_a_terminal(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    port = free_port()
    process = _serve(tmp_path / "jw.db", port, stdout=terminal, stderr=terminal)
    os.close(terminal)
    seen = b""
    try:
        while b"listening on" not in seen:
            try:
                seen += os.read(controller, 4096)
            except OSError:
                raise AssertionError(f"serve ended before it listened: {seen.decode()}") from None
        # Once it answers, serve has printed all it prints at start and waits for a signal.
        async with JobClient(f"127.0.0.1:{port}") as client:
            await client.stats()
        process.send_signal(signal.SIGTERM)
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            seen += chunk
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(controller)
    text = seen.decode()
    assert text.count("listening on") == 1, text
    assert "(store sqlite:///" in text


def test_a_port_out_of_range_is_refused(tmp_path: Path) -> None:
    for flag in ("--port", "--metrics-port"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "jobwarden.sdk.cli",
                "serve",
                flag,
                "99999",
                "--db",
                f"sqlite:///{tmp_path}/x.db",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert f"argument {flag}: invalid port (0 to 65535) value: '99999'" in done.stderr
        assert not (tmp_path / "x.db").exists(), "nothing started"
