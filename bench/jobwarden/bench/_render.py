"""Results as ``rich`` tables: one per scenario, and for ``all`` a summary of the issue's targets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from ._results import ScenarioResult

__all__ = ["conditions_line", "markdown", "print_results", "print_summary"]


def conditions_line(conditions: dict[str, Any], sizes: dict[str, Any] | None = None) -> str:
    parts = [
        f"{conditions.get('cores', '?')} cores ({conditions.get('cpu', '?')})",
        f"load {'/'.join(str(x) for x in conditions.get('load_average', []))}",
        f"Python {conditions.get('python', '?')}",
        f"grpcio {conditions.get('grpcio', '?')}",
    ]
    if conditions.get("revision"):
        parts.append(f"revision {conditions['revision']}")
    if conditions.get("engine"):
        parts.append(str(conditions["engine"]))
    if sizes:
        parts.append(", ".join(f"{k}={_size(v)}" for k, v in sizes.items()))
    return "; ".join(parts)


def _size(value: Any) -> str:
    if isinstance(value, list):
        return "/".join(_size(v) for v in value)
    if isinstance(value, int) and value >= 10_000:
        return f"{value:_}"
    return str(value)


def _met(value: bool | None) -> str:
    if value is None:
        return ""
    return "[green]yes[/]" if value else "[red]no[/]"


def scenario_table(result: ScenarioResult) -> Table:
    table = Table(
        title=f"jobwarden bench {result.scenario}",
        caption=conditions_line(result.conditions, result.sizes),
        caption_justify="left",
        title_justify="left",
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("met", justify="center")
    table.add_column("how it was taken", overflow="fold")
    for m in result.measures:
        table.add_row(
            m.name, m.formatted(), m.target.describe(m.unit) if m.target else "", _met(m.met), m.note
        )
    return table


def print_results(results: Sequence[ScenarioResult], console: Console | None = None) -> None:
    console = console or Console()
    for result in results:
        console.print(scenario_table(result))
        console.print()


def print_summary(results: Sequence[ScenarioResult], console: Console | None = None) -> None:
    """The issue's targets, one row each, over every scenario that ran."""
    console = console or Console()
    table = Table(title="targets", title_justify="left")
    for column, justify in (
        ("scenario", "left"),
        ("measure", "left"),
        ("value", "right"),
        ("target", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("met", justify="center")
    for result in results:
        for m in result.measures:
            if m.target is not None:
                table.add_row(result.scenario, m.name, m.formatted(), m.target.describe(m.unit), _met(m.met))
    console.print(table)


def markdown(results: Sequence[ScenarioResult]) -> str:
    """Every scenario as a Markdown table (figure, value, target, met, how), conditions beneath,
    then the targets in one table: what a README's Performance section shows."""
    lines: list[str] = []
    for result in results:
        if {"skipped", "failed"} & set(result.details):
            outcome = "skipped" if "skipped" in result.details else "failed"
            lines += [f"**{result.scenario}**: {outcome}: {result.details[outcome]}".rstrip(), ""]
            continue
        lines += [f"**{result.scenario}**", "", "| measure | value | target | met | how it was taken |"]
        lines.append("|---|--:|--:|:-:|---|")
        for m in result.measures:
            target = m.target.describe(m.unit) if m.target else ""
            met = "" if m.met is None else ("yes" if m.met else "**no**")
            lines.append(f"| {m.name} | {m.formatted()} | {target} | {met} | {m.note} |")
        lines += ["", f"<sub>{conditions_line(result.conditions, result.sizes)}</sub>", ""]
    goals = [(r, m, m.target) for r in results for m in r.measures if m.target is not None]
    if goals:
        lines += ["**targets**", "", "| scenario | measure | value | target | met |", "|---|---|--:|--:|:-:|"]
        for r, m, goal in goals:
            met = "yes" if m.met else "**no**"
            lines.append(f"| {r.scenario} | {m.name} | {m.formatted()} | {goal.describe(m.unit)} | {met} |")
        lines.append("")
    return "\n".join(lines)
