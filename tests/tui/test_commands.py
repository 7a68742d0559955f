"""``jobwarden console`` and ``jobwarden demo`` refuse bad input with a clear message."""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path

import pytest
from jobwarden.sdk.cli import main
from jobwarden.tui.demo import run_demo


def test_console_refuses_an_address_without_a_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["console", "--engine", "enginehost"]) == 2
    assert "--engine must be HOST:PORT, got 'enginehost'" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_console_refuses_a_bad_keep_finished(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["console", "--engine", "127.0.0.1:1", "--keep-finished", value])
    assert exit_info.value.code == 2
    assert "--keep-finished" in capsys.readouterr().err


def test_demo_on_a_busy_port_says_why_and_keeps_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run_demo(port=port, console=False) == 1
    err = capsys.readouterr().err
    match = re.search(r"the engine did not start; see (\S+engine\.log)", err)
    assert match, err
    log = Path(match.group(1))
    try:
        assert "Address already in use" in log.read_text() or "bind" in log.read_text().lower()
    finally:
        shutil.rmtree(log.parent, ignore_errors=True)
