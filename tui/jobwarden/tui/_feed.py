"""The live feed: a snapshot of the jobs, then ``WatchJobs`` from its sequence, forever.

``JobFeed.run`` is the console's one long-lived stream reader. It writes into the ``JobStore``
and never touches a widget: the screens look at the store a few times a second. When the stream
breaks it reconnects by itself from the last sequence it applied, so nothing is missed and
nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from enum import Enum

import grpc
from jobwarden.contract import TERMINAL_STATUSES, JobStatus, Limits
from jobwarden.sdk import JobClient, JobwardenError, WatchStream
from jobwarden.sdk._backoff import Backoff
from jobwarden.v1 import job_pb2

from ._model import Clock, JobStore, StatusCounts, counts_by_status

log = logging.getLogger("jobwarden.console")

#: statuses of the jobs the console always keeps
_UNFINISHED = frozenset(JobStatus) - TERMINAL_STATUSES
#: seconds between reconnection attempts, by attempt (the last one repeats)
_BACKOFF = Backoff.schedule((0.2, 0.5, 1.0, 2.0))


class LinkState(Enum):
    """What the connection indicator shows."""

    #: the first snapshot is loading
    CONNECTING = "connecting"
    #: the stream is open and the engine spoke recently
    LIVE = "live"
    #: the stream broke; the feed is trying again
    RECONNECTING = "reconnecting"
    #: the stream looks open but nothing, not even a keep-alive, came for too long
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class LinkStatus:
    state: LinkState
    #: seconds since the state began (for RECONNECTING and STALE)
    for_seconds: float
    attempts: int
    error: str
    #: jobs read so far while the first listing (every unfinished job) loads; None otherwise
    loading: int | None = None


class JobFeed:
    """Keeps a ``JobStore`` in step with the engine (see the module docstring).

    ``stale_after`` is how long a silent stream is trusted; the engine sends a keep-alive batch
    every few seconds, so a longer silence means the link is broken in a way TCP has not noticed.
    ``counts`` (the header's counts per status) is seeded from ``GetStats`` on every (re)connection
    and then follows the same events as the store.
    """

    def __init__(
        self,
        client: JobClient,
        store: JobStore,
        *,
        clock: Clock,
        stale_after: float = 10.0,
        counts: StatusCounts | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.counts = counts if counts is not None else StatusCounts()
        self.stale_after = stale_after
        self._clock = clock
        self._state = LinkState.CONNECTING
        self._since = clock()
        self._attempts = 0
        self._error = ""
        self._last_message_at = 0.0
        self._call: WatchStream | None = None
        self._need_snapshot = True
        #: per (statuses, words) of a history listing: the token of its next page ("" when done)
        self._history: dict[tuple[frozenset[JobStatus], str], str] = {}
        self.head_sequence = 0
        self.reconnects = 0
        #: jobs read so far by a listing of every unfinished job (a large backlog takes seconds)
        self._loading: int | None = None

    def status(self) -> LinkStatus:
        now = self._clock()
        if self._state is LinkState.LIVE and now - self._last_message_at > self.stale_after:
            return LinkStatus(LinkState.STALE, now - self._last_message_at, 0, "")
        return LinkStatus(self._state, now - self._since, self._attempts, self._error, self._loading)

    async def run(self) -> None:
        """Follow the engine until cancelled."""
        while True:
            try:
                if self._need_snapshot:
                    await self._snapshot()
                await self._follow()
                self._error = self._error or "the engine closed the stream"
                # A clean end of the stream is the engine going away: reconnect at once.
                self._set_state(LinkState.RECONNECTING)
            except JobwardenError as error:
                self._error = str(error)
                self._set_state(LinkState.RECONNECTING)
                if error.code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                    # We fell behind and the engine cut us; catching up from the sequence is the cure.
                    self.reconnects += 1
                    continue
                if error.code is grpc.StatusCode.OUT_OF_RANGE:
                    # Our sequence is beyond the engine's newest event: another (or a restored)
                    # database. Nothing we hold can be trusted; start over from a snapshot.
                    self._need_snapshot = True
                    self.reconnects += 1
                    continue
            except Exception as error:
                # A bug here must not freeze the view silently: say so, and start over clean.
                log.exception("the job feed failed; reloading")
                self._error = f"the feed failed ({error!r}); reloading"
                self._set_state(LinkState.RECONNECTING)
                self._need_snapshot = True
            finally:
                self._cancel_call()
            self.reconnects += 1
            self._attempts += 1
            await asyncio.sleep(_BACKOFF.delay(self._attempts))

    def has_older(self, statuses: frozenset[JobStatus], text: str) -> bool:
        """Whether finished jobs older than those kept may remain on the server for this filter."""
        if not self._history:
            return False  # no snapshot yet
        key = self._history_key(statuses, text)
        return bool(key[0]) and self._history.get(key, "-") != ""

    async def load_older(self, statuses: frozenset[JobStatus], text: str, *, max_pages: int = 5) -> int:
        """Page finished jobs older than those kept (matching the filter) into the store.

        A listing under a new filter starts from the newest job; pages whose jobs are all kept
        already are skipped, up to ``max_pages``.
        """
        if not self.has_older(statuses, text):
            return 0
        key = self._history_key(statuses, text)
        added = 0
        for _ in range(max_pages):
            token = self._history.get(key, "-")
            if not key[0] or token == "":
                break
            response = await self.client.list(
                statuses=key[0],
                text=text,
                page_size=Limits.MAX_PAGE_SIZE // 2,
                page_token="" if token == "-" else token,
                summary=True,
            )
            self._history[key] = response.next_page_token
            added += self.store.add_history(response.jobs)
            if added:
                break
        return added

    @staticmethod
    def _history_key(statuses: frozenset[JobStatus], text: str) -> tuple[frozenset[JobStatus], str]:
        wanted = (statuses & TERMINAL_STATUSES) if statuses else TERMINAL_STATUSES
        return (frozenset(wanted), text.strip())

    async def _snapshot(self) -> None:
        """Every unfinished job and the most recent finished ones, and the sequence they reflect."""
        jobs: list[job_pb2.Job] = []
        sequences: list[int] = []
        token = ""
        self._loading = 0
        try:
            while True:
                page = await self.client.list(
                    statuses=_UNFINISHED, page_token=token, page_size=Limits.MAX_PAGE_SIZE, summary=True
                )
                jobs.extend(page.jobs)
                self._loading = len(jobs)
                sequences.append(page.sequence)
                token = page.next_page_token
                if not token:
                    break
            recent = await self.client.list(
                statuses=TERMINAL_STATUSES,
                page_size=max(1, min(self.store.keep_finished, Limits.MAX_PAGE_SIZE)),
                summary=True,
            )
        finally:
            self._loading = None
        jobs.extend(recent.jobs)
        sequences.append(recent.sequence)
        self._history = {self._history_key(frozenset(), ""): recent.next_page_token}
        # Replaying from the oldest page's sequence covers any change made while paging; the
        # store ignores the events its rows already reflect.
        self.store.load(jobs, min(sequences))
        self._need_snapshot = False

    async def _follow(self) -> None:
        call = self._call = self.client.open_watch(self.store.sequence)
        # The engine speaks on a watch only when something happens or a keep-alive is due, so
        # a watch that opens on a quiet engine is live once the engine has answered a call.
        await self._confirm_connected()
        while True:
            try:
                # A stream silent for twice the stale limit is dead in a way TCP has not seen.
                response = await asyncio.wait_for(call.read(), timeout=2 * self.stale_after)
            except TimeoutError:
                self._error = "no message from the engine"
                return
            if response is None:
                return
            self._heard_from_engine()
            self.head_sequence = response.head_sequence
            if response.head_sequence < self.store.sequence:
                # The engine is behind what we have seen: a different (or restored) database.
                self._need_snapshot = True
                self._error = "the engine's history restarted; reloading"
                return
            if response.events:
                self.store.apply(response.events)
                self.counts.apply(response.events)

    async def _confirm_connected(self) -> None:
        stats = await self.client.stats()
        # The events this watch replays up to the stats' head are in these counts already.
        self.counts.seed(counts_by_status(stats.statuses), stats.head_sequence)
        self._heard_from_engine()

    def _heard_from_engine(self) -> None:
        """The engine answered: the link is live (again), and reconnecting starts over from the
        shortest backoff."""
        self._last_message_at = self._clock()
        if self._state is not LinkState.LIVE:
            self._set_state(LinkState.LIVE)
            self._attempts = 0
            self._error = ""

    def _set_state(self, state: LinkState) -> None:
        if state is not self._state:
            self._state = state
            self._since = self._clock()

    def _cancel_call(self) -> None:
        if self._call is not None:
            with contextlib.suppress(Exception):
                self._call.cancel()
            self._call = None
