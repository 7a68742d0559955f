"""The jobwarden operations console: a live Textual view of an engine, over gRPC only.

``ConsoleApp`` is the application (``jobwarden console --engine HOST:PORT``);
``jobwarden.tui.bench.measure_console_cpu`` runs it headless and reports what it costs.
"""

from ._app import ConsoleApp
from ._client import EngineClient, EngineError
from ._filter import JobFilter, SortOrder

__all__ = ["ConsoleApp", "EngineClient", "EngineError", "JobFilter", "SortOrder"]
