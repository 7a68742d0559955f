"""Pick a step: the one a job is retried from, or one of those an overflow box stands for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class StepChoiceScreen(ModalScreen[str | None]):
    """A dialog listing steps; it ends with the one chosen (None when left with escape)."""

    CSS_PATH = "dialogs.tcss"

    def __init__(self, steps: Sequence[str]) -> None:
        super().__init__()
        self._steps = list(steps)

    def step_list(self) -> OptionList:
        return OptionList(*(Option(step, id=step) for step in self._steps), id="steps")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)


class StepPickerScreen(StepChoiceScreen):
    """The finished steps of a job, in order; the chosen one and those after it run again."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Back", id="steps.back"),
    ]

    def __init__(self, job_label: str, steps: Sequence[str]) -> None:
        super().__init__(steps)
        self._job_label = job_label

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Content(f"Retry {self._job_label} from which step?"), id="dialog-title")
            yield Static(
                Content("The chosen step and every later one run again; earlier checkpoints are kept."),
                id="dialog-body",
            )
            yield self.step_list()
