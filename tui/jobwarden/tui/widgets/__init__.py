"""The console's own widgets."""

from ._header import LinkIndicator, StatusCount, StatusHeader
from ._job_table import JobTable

__all__ = ["JobTable", "LinkIndicator", "StatusCount", "StatusHeader"]
