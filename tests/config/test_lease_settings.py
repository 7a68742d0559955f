"""The lease settings of several engines on one PostgreSQL: from the file and the command line, and
the clear refusal of settings that cannot work (the leader must renew before it has to stop)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from jobwarden.server.config import load_config
from jobwarden.server.core import InvalidArgument


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobwarden.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_lease_settings_are_read_from_the_file(tmp_path: Path) -> None:
    loaded = load_config(
        write(
            tmp_path,
            """
            [engine]
            engine_id = "east-1"
            advertise = "east.example:50051"
            lease_duration = "3s"
            lease_renew_interval = "500ms"
            lease_margin = "1s"
            standby_poll_interval = "100ms"
            """,
        )
    )
    engine = loaded.engine
    assert (engine.engine_id, engine.advertise) == ("east-1", "east.example:50051")
    assert (engine.lease_duration, engine.lease_renew_interval, engine.lease_margin) == (3.0, 0.5, 1.0)
    assert engine.standby_poll_interval == 0.1


def test_the_defaults_aim_at_failover_within_three_seconds(tmp_path: Path) -> None:
    engine = load_config(write(tmp_path, "[engine]\n")).engine
    assert (engine.lease_duration, engine.lease_renew_interval, engine.lease_margin) == (2.0, 0.5, 0.5)
    assert engine.standby_poll_interval == 0.25
    assert engine.check_lease() == ""


def test_a_lease_renewed_too_late_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[engine]\nlease_duration = "1s"\nlease_renew_interval = "800ms"\n')
    with pytest.raises(InvalidArgument) as refused:
        load_config(path)
    assert refused.value.message == (
        f"config file {path}: engine: lease_renew_interval (0.8s) plus lease_margin (0.5s) must be less "
        "than lease_duration (1s): the leader must renew before it has to stop acting"
    )


def test_a_zero_lease_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as refused:
        load_config(write(tmp_path, '[engine]\nlease_duration = "0s"\n'))
    assert "engine.lease_duration must be positive" in refused.value.message


def test_serve_refuses_bad_lease_options_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobwarden.sdk.cli",
            "serve",
            "--port",
            "0",
            "--db",
            f"sqlite:///{tmp_path / 'x.db'}",
            "--lease-duration",
            "1",
            "--lease-renew-interval",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "jobwarden serve: lease_renew_interval (1s) plus lease_margin (0.5s) must be less than "
        "lease_duration (1s): the leader must renew before it has to stop acting"
    )
    assert not (tmp_path / "x.db").exists()
