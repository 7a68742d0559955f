"""The Locks screen says why a lock is still held by a job whose time ran out: its executor has not
stopped yet (a real engine, a raw worker that ignores its stop)."""

from __future__ import annotations

from jobwarden.tui.screens import LocksScreen
from jobwarden.v1 import executor_service_pb2 as pb

from tests.conftest import EngineHandle, Stubs
from tests.support import RawWorker
from tests.timers.helpers import lock, submit, timeouts
from tests.tui.helpers import RecordingConsole, until

SIZE = (140, 40)


async def test_a_lock_of_a_stopping_job_is_noted(engine: EngineHandle, stubs: Stubs) -> None:
    worker = await RawWorker(engine.address, ["render"]).connect()
    job = await submit(stubs, "render", locks=[lock("asset:5")], timeouts=timeouts(execution=0.05))
    held = await worker.next_assignment()
    await worker.next_cancel()  # and ignores it
    app = RecordingConsole(engine.address, flush_interval=0.1, stats_interval=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("l")
        screen = app.screen
        assert isinstance(screen, LocksScreen)
        table = screen.query_one("#locks")

        def holder_cells() -> list[str]:
            return [str(cell) for cell in table.get_column("holder")]  # type: ignore[attr-defined]

        await until(pilot, lambda: bool(holder_cells()), what="the lock")
        [cell] = holder_cells()
        assert cell.startswith(f"job {job.id[-8:]}")
        assert cell.endswith(": held by a KILLED job whose executor has not stopped")
        await worker.send(pb.ConnectRequest(cancel_ack=pb.CancelAck(job_id=job.id, attempt=held.attempt)))
        await until(pilot, lambda: not holder_cells(), what="the lock to go once the executor stopped")
    await worker.close()
