"""``pip install jobwarden`` is the plugin SDK alone: no server, console or database packages."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sdk_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("sdk-only")
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"pip install of the base package failed: {result.stderr[-2000:]}")
    return target


def run(venv_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv_dir / "bin" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=venv_dir,
    )


def test_the_base_install_has_the_sdk_and_nothing_of_the_server_or_console(sdk_only: Path) -> None:
    listed = run(sdk_only, "python", "-m", "pip", "list", "--format=freeze").stdout.lower()
    for heavy in ("sqlalchemy", "sqlmodel", "apscheduler", "textual", "psycopg"):
        assert heavy not in listed, f"{heavy} came with the base install"
    probe = run(
        sdk_only,
        "python",
        "-c",
        "import jobwarden.sdk as s, jobwarden.contract, jobwarden.v1.job_pb2; print(len(s.__all__))",
    )
    assert probe.returncode == 0, probe.stderr
    assert int(probe.stdout) > 5


def test_without_the_tracing_extra_a_submit_carries_no_context_and_tracing_names_the_extra(
    sdk_only: Path,
) -> None:
    listed = run(sdk_only, "python", "-m", "pip", "list", "--format=freeze").stdout.lower()
    assert "opentelemetry" not in listed
    probe = run(
        sdk_only,
        "python",
        "-c",
        "from jobwarden.sdk._requests import submit_request; print(len(submit_request('a').trace_context))",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "0"
    (sdk_only / "probe_executors.py").write_text(
        "from jobwarden.sdk import Executor\n\n\nclass Probe(Executor):\n    action = 'probe'\n\n"
        "    def execute(self, ctx):\n        return {}\n"
    )
    worker = run(
        sdk_only, "jobwarden", "worker", "probe_executors:Probe", "--tracing", "--engine", "127.0.0.1:1"
    )
    assert worker.returncode == 2, worker.stderr
    assert "pip install 'jobwarden[tracing]'" in worker.stderr
    assert "Traceback" not in worker.stderr


def test_server_and_console_commands_name_the_extra_to_install(sdk_only: Path) -> None:
    serve = run(sdk_only, "jobwarden", "serve", "--port", "0")
    assert serve.returncode == 2
    assert "pip install 'jobwarden[server]'" in serve.stderr
    assert "Traceback" not in serve.stderr
    console = run(sdk_only, "jobwarden", "console")
    assert console.returncode == 2
    assert "pip install 'jobwarden[tui]'" in console.stderr
