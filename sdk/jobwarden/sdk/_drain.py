"""Draining: a worker takes no new jobs, waits for its running ones, hands back the rest; and the
signals that start it (a second one stops at once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator

from jobwarden.sdk._ledger import Ledger
from jobwarden.sdk._runner import Runner

__all__ = ["Drain", "signals_drain"]

logger = logging.getLogger("jobwarden.worker")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Drain:
    """Drains the worker of one ``Worker.run``; ``stop`` ends it once drained."""

    def __init__(
        self, ledger: Ledger, runner: Runner, *, worker_name: str, timeout: float, stop: Callable[[], None]
    ) -> None:
        self.ledger = ledger
        self.runner = runner
        self.worker_name = worker_name
        self.timeout = timeout
        self.stop = stop

    def start(self) -> None:
        """Take no new jobs; stop once running jobs finish (or are handed back after the timeout)."""
        if self.ledger.draining:
            return
        logger.info("worker %s draining: takes no new jobs; %s", self.worker_name, self._waits_for())
        self.ledger.draining = True
        self.ledger.outbox.set_draining()
        self.ledger.kick()
        self.runner.spawn(self._drain())

    def on_signal(self, signum: int) -> None:
        key = "Ctrl+C" if signum == signal.SIGINT else signal.Signals(signum).name
        running = self.ledger.running
        if self.ledger.draining:
            logger.warning(
                "worker %s: %s again: stopping now; the engine times out its %d running job(s), and "
                "another worker may take them over",
                self.worker_name,
                key,
                len(running),
            )
            self.stop()
            return
        self.start()
        if running:
            logger.warning("worker %s: %s: draining; %s again stops at once", self.worker_name, key, key)

    def _waits_for(self) -> str:
        """What a draining worker waits for, as the operator who stopped it reads it."""
        if not self.ledger.running:
            return "no job running, stopping"
        ids = sorted(self.ledger.running)
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        return f"waiting up to {self.timeout:g}s for {len(ids)} running job(s): {shown}"

    async def _drain(self) -> None:
        ledger = self.ledger
        ledger.check_idle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        waiting_for = set(ledger.running)
        try:
            while not ledger.idle.is_set():
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ledger.idle.wait(), min(left, 1.0))
                if ledger.running and set(ledger.running) != waiting_for:
                    # Say so each time one finishes: the operator sees the drain move.
                    waiting_for = set(ledger.running)
                    logger.info(
                        "worker %s draining: %d running job(s) left: %s (%.0fs more at most)",
                        self.worker_name,
                        len(waiting_for),
                        ", ".join(sorted(waiting_for)[:5]) + (", ..." if len(waiting_for) > 5 else ""),
                        max(0.0, deadline - loop.time()),
                    )
        except TimeoutError:
            # A job being stopped is not handed back: it would run elsewhere beside its own executor.
            running = [job for job in ledger.running.values() if not job.cancel_requested]
            logger.warning(
                "worker %s: handing %d running job(s) back to the engine", self.worker_name, len(running)
            )
            ledger.outbox.release([job.key for job in running], "the worker is shutting down")
            for job in running:
                self.runner.detach(job, "handed back to the engine (drain timeout)")
            ledger.kick()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ledger.flushed.wait(), 5.0)
        self.stop()


@contextlib.contextmanager
def signals_drain(drain: Drain, *, enabled: bool) -> Iterator[None]:
    """SIGTERM and SIGINT drain the worker while inside (when ``enabled``)."""
    if not enabled:
        yield
        return
    loop = asyncio.get_running_loop()
    for signum in _SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, drain.on_signal, signum)
    try:
        yield
    finally:
        for signum in _SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
