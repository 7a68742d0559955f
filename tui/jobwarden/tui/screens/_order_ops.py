"""What the work orders screen and the run screen share: the run status chips, and the calls that
retry a work order or cancel a run, each after a confirmation."""

from __future__ import annotations

from collections.abc import Mapping

from jobwarden.sdk import JobwardenError
from jobwarden.tui._format import status_label, truncate
from jobwarden.tui._model import JobRow
from jobwarden.tui._workflows import RUN_STATUS_LABEL, RUN_TERMINAL
from jobwarden.v1 import job_pb2, workflow_pb2
from rich.style import Style
from rich.text import Text

from ._base import ConsoleScreen
from ._confirm import ConfirmScreen

#: the chip of each run status (the colours of the job statuses' chips)
RUN_CHIP: dict[int, Style] = {
    workflow_pb2.WORKFLOW_RUN_STATUS_RUNNING: Style(color="white", bgcolor="blue", bold=True),
    workflow_pb2.WORKFLOW_RUN_STATUS_DELAYED: Style(color="black", bgcolor="yellow", bold=True),
    workflow_pb2.WORKFLOW_RUN_STATUS_COMPLETED: Style(color="white", bgcolor="green4", bold=True),
    workflow_pb2.WORKFLOW_RUN_STATUS_FAILED: Style(color="white", bgcolor="red3", bold=True),
    workflow_pb2.WORKFLOW_RUN_STATUS_CANCELLED: Style(color="black", bgcolor="grey62", bold=True),
}


def run_chip(status: int) -> Text:
    return Text(f" {RUN_STATUS_LABEL.get(status, '?'):<9} ", style=RUN_CHIP.get(status, Style()))


def run_now(run: workflow_pb2.WorkflowRun | None, jobs: Mapping[str, JobRow] | None = None) -> str:
    """What a run is doing: its running steps with their progress, or how it ended.

    ``jobs`` (the console's live jobs) give a running step's progress as its job reports it."""
    if run is None:
        return ""
    statuses = [step.status for step in run.steps]
    done = statuses.count(workflow_pb2.STEP_STATUS_COMPLETED)
    tally = f"{done}/{len(statuses)} done"
    if run.status in RUN_TERMINAL:
        if run.HasField("error") and run.error.message:
            at = f"{run.error.step}: " if run.error.step and run.error.step not in run.error.message else ""
            return f"{at}{run.error.message}"
        failed = [step.name for step in run.steps if step.status == workflow_pb2.STEP_STATUS_FAILED]
        skipped = statuses.count(workflow_pb2.STEP_STATUS_SKIPPED)
        parts = [tally]
        if failed:
            parts.append(f"{', '.join(failed)} failed (handled)")
        if skipped:
            parts.append(f"{skipped} skipped")
        if run.status_reason:
            parts.append(run.status_reason)
        return " · ".join(parts)
    busy = [_doing(step, (jobs or {}).get(step.job_id)) for step in run.steps if step.status in _BUSY]
    return f"{tally} · " + ", ".join(busy) if busy else tally


_BUSY = (workflow_pb2.STEP_STATUS_RUNNING, workflow_pb2.STEP_STATUS_DELAYED)


def _doing(step: workflow_pb2.StepRun, job: JobRow | None) -> str:
    if step.status == workflow_pb2.STEP_STATUS_DELAYED:
        return f"{step.name} (delayed)"
    status: int = step.job_status
    progress = step.progress
    if job is not None and not job.status.terminal:
        status, progress = int(job.status), job.progress
    if status and status != job_pb2.JOB_STATUS_RUNNING:
        return f"{step.name} ({status_label(status)})"
    return f"{step.name} {progress}%"


def cancel_run(screen: ConsoleScreen, run_id: str, label: str, status: int) -> None:
    """Ask, then cancel the run; the notification says how it went."""
    if status in RUN_TERMINAL:
        screen.notify(
            f"{label}: the run is {RUN_STATUS_LABEL[status]}; only a running run can be cancelled.",
            severity="warning",
        )
        return
    screen.run_worker(_cancel_run(screen, run_id, label), group="ops")


async def _cancel_run(screen: ConsoleScreen, run_id: str, label: str) -> None:
    question = ConfirmScreen(
        f"Cancel the run of {label}?",
        ["Its waiting steps are cancelled at once, its running jobs through their workers."],
        "Cancel run",
    )
    if not await screen.app.push_screen_wait(question):
        return
    try:
        await screen.console.client.cancel_workflow_run(run_id, reason="cancelled from the console")
    except JobwardenError as error:
        screen.notify(f"Cancel of {label} refused: {error}", severity="error", timeout=6)
        return
    screen.notify(f"Cancelled the run of {label}", timeout=3)


def retry_order(screen: ConsoleScreen, order_id: str, label: str, status: int, from_step: str) -> None:
    """Ask, then start a new run of the work order (from ``from_step``, or from the start)."""
    if status not in RUN_TERMINAL:
        screen.notify(
            f"{label}: its run is {RUN_STATUS_LABEL.get(status, '?')}; a work order is retried once "
            "its last run ended (c cancels it).",
            severity="warning",
        )
        return
    screen.run_worker(_retry_order(screen, order_id, label, from_step), group="ops")


async def _retry_order(screen: ConsoleScreen, order_id: str, label: str, from_step: str) -> None:
    if from_step:
        title = f"Rerun {label} from step “{from_step}”?"
        lines = [
            f"“{from_step}” and every step downstream of it run again; the other steps keep "
            "their results from the last run."
        ]
        confirm = f"Rerun from {truncate(from_step, 24)}"
    else:
        title = f"Retry {label}?"
        lines = ["A new run of the work order, from the start."]
        confirm = "Retry"
    if not await screen.app.push_screen_wait(ConfirmScreen(title, lines, confirm)):
        return
    try:
        response = await screen.console.client.retry_work_order(order_id, from_step=from_step)
    except JobwardenError as error:
        screen.notify(f"Retry of {label} refused: {error}", severity="error", timeout=6)
        return
    where = f" from {from_step}" if from_step else ""
    screen.notify(f"Started run #{response.run.number} of {label}{where}", timeout=3)
