"""The console's screens and dialogs."""

from ._actions import ActionsScreen
from ._base import ConsoleScreen
from ._confirm import ConfirmScreen
from ._detail import JobDetailScreen
from ._filter import FilterScreen
from ._help import HelpScreen
from ._jobs import JobsScreen
from ._locks import LocksScreen
from ._orders import WorkOrdersScreen
from ._run import RunScreen
from ._steps import StepPickerScreen
from ._workers import WorkersScreen

__all__ = [
    "ActionsScreen",
    "ConfirmScreen",
    "ConsoleScreen",
    "FilterScreen",
    "HelpScreen",
    "JobDetailScreen",
    "JobsScreen",
    "LocksScreen",
    "RunScreen",
    "StepPickerScreen",
    "WorkOrdersScreen",
    "WorkersScreen",
]
