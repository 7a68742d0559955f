"""Several engines on one PostgreSQL survive chaos: the short CI run of ``chaos.py`` (its soak).

Ten SIGKILLs of the leader in a row, a partition of the leader from PostgreSQL, a crash of
PostgreSQL itself and a standby stopped and brought back, under a steady load of SDK clients and
workers; then nothing acknowledged is lost, nothing happens twice, the event sequence has no gap
and every job ends. The failover times are printed (``pytest -s``), never asserted: the machine is
shared; ``jobwarden bench --scenario failover`` measures them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.chaos import NoLeaderElection, run_chaos
from tests.support.postgres import PrivatePostgres

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

#: CI's run: kills in a row, and one of each other fault (the soak script's defaults are larger)
CI_KILLS = 10


async def test_three_engines_survive_kills_partitions_and_postgres_restarts(tmp_path: Path) -> None:
    reason = PrivatePostgres.unavailable()
    if reason:
        pytest.skip(reason)
    try:
        result = await run_chaos(
            tmp_path, kills=CI_KILLS, partitions=1, pg_restarts=1, standby_restarts=1, workers=2, rate=10
        )
    except NoLeaderElection as error:
        pytest.skip(str(error))
    print(result.report())
    assert not result.problems, result.report()
    assert result.faults["kill"] == CI_KILLS
    assert len(result.failovers) == CI_KILLS
    assert result.figures["acknowledged_submits"] > 0
    assert result.figures["cancels"] > 0
    assert result.figures["retries"] > 0
