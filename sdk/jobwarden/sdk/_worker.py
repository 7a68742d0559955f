"""``Worker``: hosts executors and runs the jobs the engine assigns, over one ``Connect`` stream.

The worker composes its parts, each in its own module: the executors it hosts (``_hosting``), what
it holds and owes the engine (``_ledger``), one stream session (``_session``), the engine's messages
(``_dispatch``), running and cancelling attempts (``_runner``), heartbeats (``_heartbeats``),
draining and signals (``_drain``), results (``_results``) and lock declaration (``_locks_declare``).
This module keeps the reconnect loop around the sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence

import grpc
from jobwarden.contract import Limits
from jobwarden.sdk._backoff import Backoff
from jobwarden.sdk._dispatch import Dispatcher
from jobwarden.sdk._drain import Drain, signals_drain
from jobwarden.sdk._endpoints import FAILOVER_CODES, Endpoints, engine_addresses
from jobwarden.sdk._exceptions import EngineUnavailable, ExecutorDefinitionError, from_rpc_error
from jobwarden.sdk._heartbeats import Heartbeats
from jobwarden.sdk._hosting import Executors, hosted_executors
from jobwarden.sdk._ledger import Ledger
from jobwarden.sdk._locks_declare import declare_locks
from jobwarden.sdk._runner import Runner
from jobwarden.sdk._session import Identity, Session
from jobwarden.v1 import executor_service_pb2 as pb

__all__ = ["Worker"]

logger = logging.getLogger("jobwarden.worker")

#: stream errors after which reconnecting cannot help: the engine refused this worker
_FATAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


class Worker:
    """Runs executors for the engine: ``await Worker([MyExecutor]).run()``.

    The worker registers its executors, runs assigned jobs (async executors as tasks on the event
    loop, plain ones in a thread pool), heartbeats, and reconnects with exponential backoff and
    jitter, re-attaching the jobs it still runs. A finished result is kept until the engine
    acknowledges it. Given several engines on one database, it serves the leader: a standby's
    refusal names it, and when the leader is lost the worker tries the next address (at least twice
    a second while they elect a new one), registers with the new leader and re-attaches its jobs
    there; unacknowledged results are sent again. On SIGTERM (or ``drain()``) it takes no new jobs
    and waits up to ``drain_timeout`` for running ones, then hands the rest back to the engine.

    Args:
        executors: Executor subclasses (instantiated with no arguments) or instances, one per action.
        engine: ``HOST:PORT``, several separated by commas, or a list of them; default
            ``$JOBWARDEN_ENGINE`` (the same form) or ``127.0.0.1:50051``.
        capacity: most jobs at once across all executors.
        name: a name for people; default ``host:pid``.
        labels: free-form labels shown with the worker.
        drain_timeout: seconds a draining worker waits for running jobs before handing them back.
        cancel_grace: seconds a cancelled job gets to stop before a warning says it ignores the
            cancel. It is reported stopped only once its code has returned: until then the engine
            keeps its locks and this worker keeps its slot.
        connect_timeout: give up (raise ``EngineUnavailable``) when the first connection has not
            succeeded after this many seconds; None keeps trying.
        reconnect_initial, reconnect_max: bounds (seconds, >= 0; ``ValueError`` otherwise) of the
            reconnect backoff.
    """

    def __init__(
        self,
        executors: Executors,
        *,
        engine: str | Sequence[str] | None = None,
        capacity: int = 10,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        drain_timeout: float = 30.0,
        cancel_grace: float = 10.0,
        connect_timeout: float | None = None,
        reconnect_initial: float = 0.2,
        reconnect_max: float = 10.0,
    ) -> None:
        self._endpoints = Endpoints(engine_addresses(engine))
        if not _is_int(capacity) or not 0 < capacity <= Limits.MAX_WORKER_CAPACITY:
            raise ExecutorDefinitionError(
                f"capacity must be an int from 1 to {Limits.MAX_WORKER_CAPACITY}, got {capacity!r}"
            )
        self.capacity = capacity
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.labels = dict(labels or {})
        self.drain_timeout = drain_timeout
        self.cancel_grace = cancel_grace
        self.connect_timeout = connect_timeout
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self._hosted = hosted_executors(executors)
        self._backoff = Backoff(reconnect_initial, reconnect_max)
        if self._endpoints.several:
            # While the engines elect a new leader, look for it often: the jobs wait for this worker.
            self._backoff = Backoff(min(reconnect_initial, 0.05), min(reconnect_max, 0.5))
        # What outlives one session (and one run): who the worker is, and what it holds.
        self._identity = Identity()
        self._ledger = Ledger()
        # asyncio.Event binds to a loop on first use, so these may be made here.
        self._stop = asyncio.Event()
        self._connected = asyncio.Event()
        self._session: Session | None = None
        self._drain: Drain | None = None
        self._runner: Runner | None = None
        self._locks_declared = False

    # -- public API --------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """The engine this worker connects to now (the leader, as far as it knows)."""
        return self._endpoints.current

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every engine this worker may connect to."""
        return tuple(self._endpoints.addresses)

    @property
    def actions(self) -> list[str]:
        return sorted(self._hosted)

    @property
    def running_jobs(self) -> int:
        return len(self._ledger.running)

    @property
    def draining(self) -> bool:
        return self._ledger.draining

    @property
    def worker_id(self) -> str:
        """The id the engine gave this worker (kept across reconnects); empty before the first."""
        return self._identity.worker_id

    @property
    def finished_jobs(self) -> int:
        """The number of jobs finished by this worker (completed, failed or cancelled)."""
        return self._ledger.finished_jobs

    async def wait_connected(self) -> None:
        """Return once the worker is registered with the engine."""
        await self._connected.wait()

    def run_sync(self, *, handle_signals: bool = True) -> None:
        """Run the worker in a new event loop until it is stopped or drained."""
        asyncio.run(self.run(handle_signals=handle_signals))

    async def run(self, *, handle_signals: bool = False) -> None:
        """Serve until ``stop()``, or until drained (SIGTERM/SIGINT when ``handle_signals``).

        Raises ``EngineUnavailable`` when ``connect_timeout`` passes before the first connection,
        and ``JobwardenError`` when the engine refuses the registration.
        """
        ledger = self._ledger
        runner = self._runner = Runner(
            ledger, worker_name=self.name, cancel_grace=self.cancel_grace, threads=self.capacity + 4
        )
        drain = self._drain = Drain(
            ledger, runner, worker_name=self.name, timeout=self.drain_timeout, stop=self.stop
        )
        heartbeats = Heartbeats(ledger)
        dispatcher = Dispatcher(ledger, runner, self._hosted, heartbeats, worker_name=self.name)
        self._session = Session(
            self.address,
            identity=self._identity,
            ledger=ledger,
            dispatcher=dispatcher,
            heartbeats=heartbeats,
            register=self._register_template(),
            stopping=self._stop,
            connected=self._connected,
            on_registered=self._on_registered,
            worker_name=self.name,
        )
        with runner, signals_drain(drain, enabled=handle_signals):
            await self._serve(self._session)

    def drain(self) -> None:
        """Take no new jobs; stop once running jobs finish (or are handed back after the timeout)."""
        if self._drain is not None:
            self._drain.start()

    def stop(self) -> None:
        """Stop at once: running jobs are abandoned (the engine times them out and may resume them)."""
        self._stop.set()
        if self._session is not None:
            self._session.cancel()

    # -- the reconnect loop --------------------------------------------------------------------
    async def _serve(self, session: Session) -> None:
        backoff = self._backoff
        backoff.reset()
        first_try = time.monotonic()
        ever_connected = False
        endpoints = self._endpoints
        while not self._stop.is_set():
            problem: str = "the stream ended"
            session.address = endpoints.current
            failure: BaseException | None = None
            try:
                await session.once()
            except grpc.RpcError as error:
                refused = from_rpc_error(error, address=session.address)
                if refused.code in _FATAL_CODES and not session.registered:
                    raise refused from None
                problem = str(refused)
                failure = error if refused.code in FAILOVER_CODES else None
            except (OSError, EngineUnavailable) as error:
                problem = str(error)
                failure = error
            registered = session.registered
            if failure is not None or not registered:
                # Another engine may lead now: the one a standby named, else the next address.
                endpoints.next_after(session.address, failure or EngineUnavailable(problem))
            self._connected.clear()
            ever_connected = ever_connected or registered
            if self._stop.is_set():
                break
            if registered:
                backoff.reset()
            if (
                not ever_connected
                and self.connect_timeout is not None
                and time.monotonic() - first_try >= self.connect_timeout
            ):
                where = (
                    f"any engine of {endpoints.describe()}"
                    if endpoints.several
                    else f"the engine at {self.address}"
                )
                raise EngineUnavailable(f"cannot reach {where} (gave up after {self.connect_timeout:g}s)")
            delay = backoff.next_delay()
            logger.warning(
                "worker %s: %s (%s); reconnecting in %.1fs",
                self.name,
                f"lost the engine at {session.address}"
                if registered
                else f"no session with the engine at {session.address}",
                problem,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    def _register_template(self) -> pb.Register:
        """The ``Register`` of every session, before its jobs, id and token are added."""
        return pb.Register(
            worker_name=self.name,
            executors=[
                pb.ExecutorSpec(
                    action=hosted.action,
                    supports_resume=bool(hosted.executor.supports_resume),
                    max_concurrency=hosted.executor.max_concurrency,
                )
                for hosted in self._hosted.values()
            ],
            capacity=self.capacity,
            labels=self.labels,
        )

    def _on_registered(self) -> None:
        if not self._locks_declared and self._runner is not None:
            self._locks_declared = True
            self._runner.spawn(declare_locks(self.addresses, self._hosted.values(), worker_name=self.name))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
