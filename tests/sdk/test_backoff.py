"""The reconnect backoff shared by the worker, the client's watch and the console's feed.

Pure: the random source is injected and nothing sleeps.
"""

from __future__ import annotations

import math
import random

import pytest
from jobwarden.sdk import Executor, JobContext, Worker
from jobwarden.sdk._backoff import Backoff


def _no_jitter_upper(low: float, high: float) -> float:
    return high


def test_delays_double_from_initial_and_stop_at_the_maximum() -> None:
    backoff = Backoff(0.2, 10.0, jitter=0)
    delays = [backoff.next_delay() for _ in range(9)]
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0])
    assert backoff.attempts == 9


def test_an_engine_down_for_hours_stays_at_the_maximum_without_overflowing() -> None:
    """2.0 ** 1100 is no float: the exponent must stop growing once the maximum is reached."""
    backoff = Backoff(0.2, 10.0, jitter=0)
    assert backoff.delay(1_100) == 10.0
    assert backoff.delay(10**9) == 10.0
    assert Backoff(0.1, 5.0, factor=1.5, jitter=0).delay(5_000) == 5.0


def test_jitter_draws_between_the_lower_share_and_the_delay() -> None:
    drawn: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        drawn.append((low, high))
        return low

    backoff = Backoff(0.2, 10.0, uniform=record)  # the worker's: jitter 0.5
    assert backoff.next_delay() == pytest.approx(0.1)
    backoff.next_delay()
    assert drawn == [pytest.approx((0.1, 0.2)), pytest.approx((0.2, 0.4))]
    drawn.clear()
    Backoff(1.0, 8.0, jitter=1.0, uniform=record).delay(4)  # "full jitter"
    assert drawn == [(0.0, 8.0)]


def test_jittered_delays_never_leave_their_range() -> None:
    rng = random.Random(11)
    backoff = Backoff(0.2, 10.0, uniform=rng.uniform)
    for attempt in range(1, 40):
        base = min(10.0, 0.2 * 2 ** (attempt - 1))
        for _ in range(50):
            assert base / 2 <= backoff.delay(attempt) <= base


def test_reset_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(0.1, 5.0, uniform=_no_jitter_upper)
    for _ in range(6):
        backoff.next_delay()
    assert backoff.next_delay() == 5.0
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == pytest.approx(0.1)


def test_a_schedule_gives_its_delays_in_turn_and_repeats_the_last() -> None:
    """The console's: 0.2 s, 0.5 s, 1 s, then every 2 s (docs/console.md)."""
    backoff = Backoff.schedule((0.2, 0.5, 1.0, 2.0))
    assert [backoff.next_delay() for _ in range(6)] == [0.2, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert [backoff.delay(attempt) for attempt in (0, 1, 4, 1_000)] == [0.2, 0.2, 2.0, 2.0]
    backoff.reset()
    assert backoff.next_delay() == 0.2


def test_a_zero_delay_draws_nothing() -> None:
    def never(low: float, high: float) -> float:
        raise AssertionError("no draw for a zero delay")

    assert Backoff(0.0, 0.0, uniform=never).next_delay() == 0.0


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: Backoff(-0.1, 10.0), "initial delay must be a number of seconds >= 0, got -0.1"),
        (lambda: Backoff(0.2, math.inf), "maximum delay must be a number of seconds >= 0, got inf"),
        (lambda: Backoff(math.nan, 1.0), "initial delay must be a number of seconds >= 0, got nan"),
        (lambda: Backoff(True, 1.0), "initial delay must be a number of seconds >= 0, got True"),
        (
            lambda: Backoff(0.2, "10"),  # type: ignore[arg-type]  # a bad type on purpose
            "maximum delay must be a number of seconds >= 0, got '10'",
        ),
        (lambda: Backoff(0.2, 10.0, factor=0.5), "factor must be a number >= 1, got 0.5"),
        (lambda: Backoff(0.2, 10.0, jitter=1.5), "jitter must be a number from 0 to 1, got 1.5"),
        (lambda: Backoff.schedule(()), "a backoff schedule needs at least one delay"),
        (lambda: Backoff.schedule((0.2, -1.0)), "must be a number of seconds >= 0, got -1.0"),
    ],
)
def test_bad_bounds_are_refused_saying_which(make: object, fragment: str) -> None:
    with pytest.raises(ValueError, match="backoff") as refused:
        make()  # type: ignore[operator]
    assert fragment in str(refused.value)


class _Idle(Executor):
    action = "idle"

    async def execute(self, ctx: JobContext) -> None:
        return None


def test_a_worker_refuses_a_negative_reconnect_delay_before_it_runs() -> None:
    with pytest.raises(ValueError, match="initial delay must be a number of seconds >= 0, got -1"):
        Worker([_Idle], reconnect_initial=-1)
    worker = Worker([_Idle])  # the documented 0.2 s to 10 s
    assert (worker.reconnect_initial, worker.reconnect_max) == (0.2, 10.0)
