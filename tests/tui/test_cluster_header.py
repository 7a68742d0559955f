"""The header names the engines: the leader, the epoch and the standbys, and still fits 80x24."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jobwarden.tui import ConsoleApp
from jobwarden.tui._cluster import cluster_forms, cluster_tip
from jobwarden.v1 import cluster_service_pb2
from textual.widgets import Static

from tests.conftest import EngineHandle
from tests.tui.canned import CannedThread, canned_cluster
from tests.tui.helpers import until

pytestmark = pytest.mark.usefixtures("utc")


def header_engine(app: ConsoleApp) -> Static:
    return app.screen.query_one("#header-engine", Static)


def shown(app: ConsoleApp) -> str:
    return str(header_engine(app).render())


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((200, 40), "leader e-a 10.0.0.1:50051 · epoch 7 · standbys e-b, e-c"),
        ((160, 40), "leader 10.0.0.1:50051 · epoch 7 · 2 standbys"),
        ((80, 24), "L 10.0.0.1:50051 e7 +2"),
    ],
)
async def test_the_header_shows_the_leader_epoch_and_standbys(
    canned: CannedThread, size: tuple[int, int], expected: str
) -> None:
    canned.engine.cluster = canned_cluster()
    app = ConsoleApp(canned.address, engine_label="canned engine")
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: shown(app) == expected, what=f"the header to read {expected!r}")
        # The counts keep every digit: nothing else gave way.
        assert app.screen.query_one("#header-counts").size.height in (1, 2)
        tip = str(header_engine(app).tooltip)
        assert "e-a  10.0.0.1:50051  leader  epoch 7" in tip
        assert "e-b  10.0.0.2:50051  standby  epoch 7  (answered)" in tip


async def test_the_header_says_when_no_engine_leads(canned: CannedThread) -> None:
    canned.engine.cluster = canned_cluster(leader=False)
    app = ConsoleApp(canned.address, engine_label="canned engine")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: shown(app).startswith("no leader"), what="'no leader'")
        # A new leader is elected: the header follows within a poll or two.
        canned.engine.cluster = canned_cluster()
        await until(pilot, lambda: shown(app).startswith("L 10.0.0.1"), what="the new leader")


async def test_an_engine_without_cluster_service_keeps_its_address(canned: CannedThread) -> None:
    app = ConsoleApp(canned.address, engine_label="canned engine", stats_interval=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: shown(app) == "canned engine", what="the label")
        await until(pilot, lambda: app.flushes > 10, what="a few flushes")
        assert app.cluster is None
        assert header_engine(app).tooltip is None


def test_one_engine_shows_its_label_and_epoch() -> None:
    single = cluster_service_pb2.ListEnginesResponse(
        engine_id="e-1",
        engines=[
            cluster_service_pb2.EngineInfo(
                engine_id="e-1",
                address="127.0.0.1:50051",
                role=cluster_service_pb2.ENGINE_ROLE_LEADER,
                epoch=1,
            )
        ],
        leader_id="e-1",
        leader_address="127.0.0.1:50051",
        epoch=1,
    )
    assert cluster_forms(single, "127.0.0.1:50051") == ("127.0.0.1:50051 · epoch 1", "127.0.0.1:50051")
    # Given several addresses, the survivor of a failover: which one leads, and no standby left.
    assert cluster_forms(single, "127.0.0.1:50051,127.0.0.1:50052") == (
        "leader e-1 127.0.0.1:50051 · epoch 1 · standbys none",
        "leader 127.0.0.1:50051 · epoch 1 · 0 standbys",
        "L 127.0.0.1:50051 · e1 · +0",
        "L 127.0.0.1:50051 e1 +0",
        "L 127.0.0.1:50051",
    )
    assert cluster_forms(None, "x:1") == ("x:1",)
    assert cluster_tip(None) is None
    one_standby = canned_cluster()
    del one_standby.engines[2]
    assert cluster_forms(one_standby, "x")[1] == "leader 10.0.0.1:50051 · epoch 7 · 1 standby"


def _jobwarden(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("jobwarden")), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_jobwarden_engines_lists_the_leader_first(canned: CannedThread) -> None:
    canned.engine.cluster = canned_cluster()
    done = _jobwarden("engines", "--engine", canned.address)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ENGINE", "ADDRESS", "ROLE", "EPOCH", "SEEN", "LEASE", "ENDS"]
    assert lines[1].split()[:4] == ["e-a", "10.0.0.1:50051", "leader", "7"]
    assert lines[2].split()[:5] == ["e-b", "*", "10.0.0.2:50051", "standby", "7"]
    assert lines[3].split()[-1] == "-"  # a standby has no lease
    as_json = json.loads(_jobwarden("engines", "--json", "--engine", canned.address).stdout)
    assert as_json["leader_id"] == "e-a"
    assert [engine["engine_id"] for engine in as_json["engines"]] == ["e-a", "e-b", "e-c"]


def test_jobwarden_engines_says_when_none_leads(canned: CannedThread) -> None:
    canned.engine.cluster = canned_cluster(leader=False)
    done = _jobwarden("engines", "--engine", canned.address)
    assert done.returncode == 0
    assert "no engine leads now" in done.stderr


def test_jobwarden_engines_of_an_engine_without_them_is_a_clear_error(canned: CannedThread) -> None:
    done = _jobwarden("engines", "--engine", canned.address)
    assert done.returncode == 1
    assert done.stderr.startswith("jobwarden engines: ")
    assert "Traceback" not in done.stderr


async def test_one_real_engine_on_sqlite_shows_its_address_and_epoch_1(engine: EngineHandle) -> None:
    app = ConsoleApp(engine.address, stats_interval=0.2)
    async with app.run_test(size=(140, 30)) as pilot:
        await until(pilot, lambda: app.cluster is not None, what="the engine's ListEngines")
        assert app.cluster is not None
        assert [each.role for each in app.cluster.engines] == [cluster_service_pb2.ENGINE_ROLE_LEADER]
        expected = f"{engine.address} · epoch 1"
        await until(pilot, lambda: shown(app) == expected, what=f"the header to read {expected!r}")
        # At 80 columns the rate gives way (not the epoch), and then a narrower terminal takes the
        # epoch, but the address stays whole.
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: shown(app) == expected, what=f"{expected!r} at 80 columns")
        await pilot.resize_terminal(70, 24)
        await until(pilot, lambda: shown(app) == engine.address, what="the address alone")
