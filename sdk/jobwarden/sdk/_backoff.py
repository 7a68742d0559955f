"""``Backoff``: the delays between reconnection attempts, shared by the worker, the client's watch and
the console's feed.

A delay grows exponentially from ``initial`` (the first retry) by ``factor`` per failed attempt up to
``maximum``, or follows an explicit ``schedule`` whose last delay repeats. ``jitter`` spreads it: the
delay is drawn uniformly from ``[(1 - jitter) * d, d]``, so a fleet cut at once does not come back at
once (0 is none, 1 is "full jitter"). ``reset()`` after a healthy connection starts again from the
first delay.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

__all__ = ["Backoff"]


class Backoff:
    """Delays between attempts: ``next_delay()`` after each failure, ``reset()`` once healthy again.

    ``delay(attempt)`` is the same as a pure function of the attempt number (1 is the first retry).
    ``uniform`` is the random source (``random.uniform``'s signature), for tests.
    """

    __slots__ = ("_ceiling", "_schedule", "attempts", "factor", "initial", "jitter", "maximum", "uniform")

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        factor: float = 2.0,
        jitter: float = 0.5,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        for name, value in (("initial", initial), ("maximum", maximum)):
            if not _is_number(value) or not 0 <= value < math.inf:
                raise ValueError(
                    f"the backoff's {name} delay must be a number of seconds >= 0, got {value!r}"
                )
        if not _is_number(factor) or not 1 <= factor < math.inf:
            raise ValueError(f"the backoff's factor must be a number >= 1, got {factor!r}")
        if not _is_number(jitter) or not 0 <= jitter <= 1:
            raise ValueError(f"the backoff's jitter must be a number from 0 to 1, got {jitter!r}")
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.factor = float(factor)
        self.jitter = float(jitter)
        self.uniform = uniform
        #: failed attempts since the last reset
        self.attempts = 0
        self._schedule: tuple[float, ...] = ()
        # The exponent stops growing once the delay is at ``maximum``: 2.0 ** 1100 overflows, and a
        # worker whose engine is down for hours must not crash on it.
        self._ceiling = _largest_exponent(self.initial, self.maximum, self.factor)

    @classmethod
    def schedule(
        cls,
        delays: Sequence[float],
        *,
        jitter: float = 0.0,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> Backoff:
        """Delays given one by one, the last repeating: ``Backoff.schedule((0.2, 0.5, 1.0, 2.0))``."""
        steps = tuple(delays)
        if not steps:
            raise ValueError("a backoff schedule needs at least one delay")
        for step in steps:
            cls(step, step)  # refuses what is not a delay, saying which
        backoff = cls(min(steps), max(steps), jitter=jitter, uniform=uniform)
        backoff._schedule = tuple(float(step) for step in steps)
        return backoff

    def delay(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (1 is the first), jitter applied."""
        if self._schedule:
            base = self._schedule[min(max(attempt, 1), len(self._schedule)) - 1]
        else:
            exponent = min(max(attempt, 1) - 1, self._ceiling)
            base = min(self.maximum, self.initial * self.factor**exponent)
        if not self.jitter or not base:
            return base
        return self.uniform((1.0 - self.jitter) * base, base)

    def next_delay(self) -> float:
        """Count one more failed attempt and return the delay before the next one."""
        self.attempts += 1
        return self.delay(self.attempts)

    def reset(self) -> None:
        """The connection is healthy again: the next failure waits the first delay."""
        self.attempts = 0


def _largest_exponent(initial: float, maximum: float, factor: float) -> int:
    """An exponent at which ``initial * factor ** exponent`` reaches ``maximum`` (0: it never grows)."""
    if initial == 0 or factor == 1 or initial >= maximum:
        return 0
    return math.ceil(math.log(maximum / initial, factor)) + 1


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
