"""What importing jobwarden costs: the ``jobwarden`` command's parser loads neither Textual nor the
engine, the package roots import lazily, and no module imports itself back through others.

The import-linter contracts in pyproject.toml say which layer may import which; these tests cover what
they cannot: what a real process has in ``sys.modules``, and cycles at run time.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EngineHandle

#: modules that only the commands that need them may load: the console, the engine and their stacks
HEAVY = (
    "textual",
    "rich",
    "jobwarden.tui._app",
    "sqlalchemy",
    "sqlmodel",
    "apscheduler",
    "jobwarden.server.core",
    "jobwarden.server.api",
    "opentelemetry.trace",
)


def loaded_after(code: str) -> set[str]:
    """The modules of ``HEAVY`` in ``sys.modules`` once ``code`` ran in a fresh interpreter."""
    probe = (
        "import json, sys\n"
        f"{code}\n"
        f"print(json.dumps([name for name in {list(HEAVY)!r} if name in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def command_code(*argv: str) -> str:
    """Python that runs ``jobwarden ARGV`` as the console script does, its output silenced, and fails
    unless the command succeeded."""
    return (
        "import contextlib, io\n"
        "from jobwarden.sdk.cli import main\n"
        "output = io.StringIO()\n"
        "with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):\n"
        "    try:\n"
        f"        code = main({list(argv)!r})\n"
        "    except SystemExit as exit:\n"
        "        code = exit.code\n"
        "assert code == 0, (code, output.getvalue())\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["submit", "--help"],
        ["jobs", "--help"],
        ["worker", "--help"],
        ["console", "--help"],
        ["demo", "--help"],
        ["serve", "--help"],
        ["bench", "--help"],
    ],
    ids=" ".join,
)
def test_the_jobwarden_command_builds_its_parser_without_the_console_or_the_engine(argv: list[str]) -> None:
    assert loaded_after(command_code(*argv)) == set()


async def test_a_client_command_talks_to_an_engine_without_loading_the_console_or_the_engine(
    engine: EngineHandle,
) -> None:
    code = command_code("jobs", "--engine", engine.address, "--json")
    assert await asyncio.to_thread(loaded_after, code) == set()


def test_the_console_command_loads_textual_only_when_it_runs() -> None:
    # The probe that the test above is not vacuous: the heavy modules are named right.
    assert {"textual", "jobwarden.tui._app"} <= loaded_after("import jobwarden.tui._app")


def test_the_package_roots_import_without_textual_or_the_engine() -> None:
    loaded = loaded_after("import jobwarden.tui, jobwarden.server, jobwarden.sdk, jobwarden.tui.commands")
    assert loaded == set()


def test_the_sdk_root_loads_neither_the_cli_nor_opentelemetry() -> None:
    probe = (
        "import sys\n"
        "import jobwarden.sdk\n"
        "wrong = ['jobwarden.sdk.cli', 'jobwarden.sdk._commands', 'opentelemetry.trace']\n"
        "print(sorted(name for name in wrong if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_console_root_still_gives_its_public_names() -> None:
    probe = (
        "import jobwarden.tui as tui\n"
        "from jobwarden.tui import ConsoleApp, JobFilter, SortOrder\n"
        "from jobwarden.tui._app import ConsoleApp as App\n"
        "assert ConsoleApp is App and tui.ConsoleApp is App\n"
        "assert set(tui.__all__) <= set(dir(tui))\n"
        "try:\n"
        "    tui.NoSuchName\n"
        "except AttributeError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "module 'jobwarden.tui' has no attribute 'NoSuchName'"


# -- cycles ------------------------------------------------------------------------------------------


def jobwarden_modules() -> dict[str, Path]:
    """Every module of the ``jobwarden`` namespace package (its four roots), by dotted name."""
    spec = importlib.util.find_spec("jobwarden")
    assert spec is not None
    assert spec.submodule_search_locations is not None
    modules: dict[str, Path] = {}
    for root in map(Path, spec.submodule_search_locations):
        for path in root.rglob("*.py"):
            parts = ["jobwarden", *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(statements: list[ast.stmt], type_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not inside functions or classes, and under
    ``if TYPE_CHECKING`` only with ``type_only`` (its ``else`` always runs)."""
    for statement in statements:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            yield statement
        elif isinstance(statement, ast.If):
            if type_only or not _is_type_checking(statement.test):
                yield from _top_level_imports(statement.body, type_only)
            yield from _top_level_imports(statement.orelse, type_only)
        elif isinstance(statement, ast.Try):
            for block in (statement.body, *(h.body for h in statement.handlers), statement.orelse):
                yield from _top_level_imports(block, type_only)
            yield from _top_level_imports(statement.finalbody, type_only)


def imported_by(name: str, path: Path, modules: dict[str, Path], type_only: bool) -> set[str]:
    """The jobwarden modules ``name`` imports at import time (``from pkg import sub`` is ``pkg.sub``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _top_level_imports(ast.parse(path.read_text(), str(path)).body, type_only):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            base = f"{anchor}.{base}" if base else anchor
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            found.add(submodule if submodule in modules else base)
    return {imported for imported in found if imported in modules and imported != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None when it has none."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        pending = [iter(sorted(graph[start]))]
        while pending:
            following = next(pending[-1], None)
            if following is None:
                done.add(path.pop())
                pending.pop()
            elif following in path:
                return [*path[path.index(following) :], following]
            elif following not in done:
                path.append(following)
                pending.append(iter(sorted(graph[following])))
    return None


def import_graph(type_only: bool = False, within: str = "jobwarden") -> dict[str, set[str]]:
    """Who imports whom among the modules of ``within``; with ``type_only``, counting the imports
    under ``if TYPE_CHECKING`` too."""
    modules = jobwarden_modules()
    graph = {name: imported_by(name, path, modules, type_only) for name, path in modules.items()}
    inside = {name for name in graph if name == within or name.startswith(f"{within}.")}
    return {name: graph[name] & inside for name in inside}


def test_the_graph_reader_sees_the_imports_it_should() -> None:
    graph = import_graph()
    assert "jobwarden.tui._context" in graph["jobwarden.tui.screens._base"]
    assert "jobwarden.tui.screens" in graph["jobwarden.tui._app"]
    assert "jobwarden.server.core" in graph["jobwarden.server.api.server"]
    # Lazy imports (inside a function) and type-only ones are not edges.
    assert "jobwarden.tui._app" not in graph["jobwarden.tui.commands"]
    assert "jobwarden.sdk._context" not in graph["jobwarden.sdk._tracing"]


def test_the_cycle_finder_finds_a_cycle_and_returns_its_path() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]


def test_no_jobwarden_module_imports_itself_back_at_import_time() -> None:
    assert find_cycle(import_graph()) is None


def test_the_console_modules_form_no_cycle_even_through_type_only_imports() -> None:
    # The screens once named the app for their type hints, and the app imports the screens.
    assert find_cycle(import_graph(type_only=True, within="jobwarden.tui")) is None
