"""The console's own widgets."""

from ._footer import ConsoleFooter
from ._header import LinkIndicator, StatusCount, StatusHeader
from ._job_table import JobTable
from ._step_graph import StepGraph

__all__ = ["ConsoleFooter", "JobTable", "LinkIndicator", "StatusCount", "StatusHeader", "StepGraph"]
