"""The store's batched write: what one group commit may hold."""

from __future__ import annotations

import pytest
from jobwarden.server.core.store import Store, WriteSet, configs_t, workers_t
from sqlalchemy import select


def worker_row(worker_id: str, *, connected: bool) -> dict[str, object]:
    return {
        "id": worker_id,
        "name": "w",
        "doc": "{}",
        "connected_at": 1.0,
        "last_seen_at": 2.0,
        "connected": connected,
    }


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "postgres_url"])
def test_one_batch_may_change_a_worker_or_an_action_twice_and_the_last_state_wins(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    store = Store(request.getfixturevalue(url_fixture))
    store.create_schema()
    # A worker that connected and left within one group commit; an action configured twice.
    ws = WriteSet(
        workers=[worker_row("w-1", connected=True), worker_row("w-1", connected=False)],
        action_configs=[
            {"action": "a", "doc": '{"action": "a"}'},
            {"action": "a", "doc": '{"action": "a", "paused": true}'},
        ],
    )
    store.write(ws)
    store.write(WriteSet(workers=[worker_row("w-1", connected=True)]))
    with store.engine.connect() as conn:
        workers = conn.execute(select(workers_t.c.id, workers_t.c.connected)).all()
        configs = conn.execute(select(configs_t.c.doc)).all()
    store.close()
    assert [(w.id, bool(w.connected)) for w in workers] == [("w-1", True)]
    assert [c.doc for c in configs] == ['{"action": "a", "paused": true}']
