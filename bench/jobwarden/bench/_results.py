"""What a scenario measured: named figures with their unit, and the issue's target where there is one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Measure", "ScenarioResult", "ScenarioUnavailable", "Target"]


class ScenarioUnavailable(Exception):
    """A scenario cannot run in this setup; the message says why."""


@dataclass(slots=True, frozen=True)
class Target:
    """A figure's goal: ``value <= limit`` (``at_most``) or ``value >= limit``."""

    limit: float
    at_most: bool = False

    def met(self, value: float) -> bool:
        return value <= self.limit if self.at_most else value >= self.limit

    def describe(self, unit: str) -> str:
        sign = "≤" if self.at_most else "≥"
        return f"{sign} {_number(self.limit)} {unit}".rstrip()


@dataclass(slots=True)
class Measure:
    """One figure: ``value`` in ``unit``; ``target`` when the issue sets one; ``note`` says how it
    was taken."""

    name: str
    value: float
    unit: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.value)

    def formatted(self) -> str:
        return f"{_number(self.value)} {self.unit}".rstrip()


@dataclass(slots=True)
class ScenarioResult:
    """A scenario's figures, the sizes it ran with, and everything else it saw (``details``)."""

    scenario: str
    sizes: dict[str, Any]
    measures: list[Measure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    conditions: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def add(
        self,
        name: str,
        value: float,
        unit: str = "",
        *,
        target: Target | None = None,
        note: str = "",
    ) -> Measure:
        measure = Measure(name, value, unit, target, note)
        self.measures.append(measure)
        return measure

    def value(self, name: str) -> float:
        """The value of the measure called ``name`` (KeyError if there is none)."""
        for measure in self.measures:
            if measure.name == name:
                return measure.value
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "sizes": self.sizes,
            "seconds": round(self.seconds, 2),
            "conditions": self.conditions,
            "measures": [
                {
                    "name": m.name,
                    "value": m.value,
                    "unit": m.unit,
                    "target": asdict(m.target) if m.target else None,
                    "met": m.met,
                    "note": m.note,
                }
                for m in self.measures
            ],
            "details": self.details,
        }


def _number(value: float) -> str:
    if value != value:  # NaN: not measured
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"
