"""The jobwarden operations console: a live Textual view of an engine, over gRPC only.

``ConsoleApp`` is the application (``jobwarden console --engine HOST:PORT``); it talks to the engine
through the SDK's ``JobClient`` and shows the SDK's errors (``jobwarden.sdk.JobwardenError``);
``jobwarden.tui.bench.measure_console_cpu`` runs it headless and reports what it costs.

The names below are imported on first use (PEP 562), so that importing a part of the console
(``jobwarden.tui.commands`` for the ``jobwarden`` command's parser) does not load Textual.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import ConsoleApp
    from ._filter import JobFilter, SortOrder

__all__ = ["ConsoleApp", "JobFilter", "SortOrder"]

#: the module that defines each public name
_MODULE_OF = {
    "ConsoleApp": "._app",
    "JobFilter": "._filter",
    "SortOrder": "._filter",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
