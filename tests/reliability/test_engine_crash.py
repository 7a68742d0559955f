"""The engine survives SIGKILL under load: the short CI run of the soak (``soak.py`` runs it longer)."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.soak import run_soak

#: CI's number of crashes; the soak script's default is 12
CI_KILLS = 4


async def test_engine_killed_repeatedly_under_load_loses_nothing(tmp_path: Path) -> None:
    result = await run_soak(tmp_path, kills=CI_KILLS, workers=3)
    print(result.report())
    assert not result.figures.problems, "\n".join(result.figures.problems[:20])
    assert result.figures.acknowledged_results > 0
    assert result.figures.jobs == len(set(result.ledger.submitted))
