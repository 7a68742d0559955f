"""The jobwarden operations console: a live Textual view of an engine, over gRPC only.

``ConsoleApp`` is the application (``jobwarden console --engine HOST:PORT``); it talks to the engine
through the SDK's ``JobClient`` and shows the SDK's errors (``jobwarden.sdk.JobwardenError``);
``jobwarden.tui.bench.measure_console_cpu`` runs it headless and reports what it costs.
"""

from ._app import ConsoleApp
from ._filter import JobFilter, SortOrder

__all__ = ["ConsoleApp", "JobFilter", "SortOrder"]
