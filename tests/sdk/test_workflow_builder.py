"""The workflow builder and the declarative files, which need no engine: the same definition said in
Python, TOML, YAML and JSON makes the same message, and a bad definition is refused naming the file,
the step and the field, before anything is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jobwarden.sdk import Workflow, WorkflowDefinitionError, load_workflow
from jobwarden.sdk._workflow_files import workflow_from_mapping
from jobwarden.v1 import job_pb2, workflow_pb2
from jobwarden.wire import duration_seconds, struct_to_dict

from examples.workflows.media_publish import media_publish

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "workflows"


def test_the_example_files_and_the_builder_make_the_same_definition() -> None:
    from_toml = load_workflow(EXAMPLES / "media-publish.toml").definition()
    from_yaml = load_workflow(EXAMPLES / "media-publish.yaml").definition()
    built = media_publish().definition()
    assert from_toml == built
    assert from_yaml == built
    assert [step.name for step in built.steps] == [
        "ingest",
        "transcode_1080p",
        "transcode_720p",
        "transcode_480p",
        "package",
        "publish",
        "notify",
    ]
    ingest = built.steps[0]
    assert ingest.action.action == "media.ingest"
    assert not ingest.action.HasField("input")  # the run's input
    assert [lock.resource for lock in ingest.action.locks] == ["asset:{{ input.asset_id }}"]
    assert ingest.action.locks[0].mode == job_pb2.LOCK_MODE_EXCLUSIVE
    assert duration_seconds(ingest.action.timeouts.heartbeat) == 30
    assert ingest.action.retry_policy.max_attempts == 3
    package = built.steps[4]
    assert package.join == workflow_pb2.JOIN_MODE_ALL
    assert struct_to_dict(package.action.input)["files"][0] == "{{ steps.transcode_1080p.result.file }}"
    assert built.steps[5].action.locks[0].mode == job_pb2.LOCK_MODE_SHARED
    assert built.steps[6].join == workflow_pb2.JOIN_MODE_ANY
    assert duration_seconds(built.run_timeout) == 1800
    assert built.context["notify_on_failure"] == "yes"
    edges = [(e.source, e.target, workflow_pb2.EdgeKind.Name(e.kind), e.condition) for e in built.edges]
    assert edges == [
        ("ingest", "transcode_1080p", "EDGE_KIND_SUCCESS", ""),
        ("ingest", "transcode_720p", "EDGE_KIND_SUCCESS", ""),
        ("ingest", "transcode_480p", "EDGE_KIND_SUCCESS", ""),
        ("ingest", "notify", "EDGE_KIND_FAILURE", ""),
        ("transcode_1080p", "package", "EDGE_KIND_SUCCESS", ""),
        ("transcode_720p", "package", "EDGE_KIND_SUCCESS", ""),
        ("transcode_480p", "package", "EDGE_KIND_SUCCESS", ""),
        ("package", "publish", "EDGE_KIND_SUCCESS", ""),
        ("publish", "notify", "EDGE_KIND_FAILURE", "context.notify_on_failure == 'yes'"),
    ]


def test_edges_come_out_in_one_order_whatever_order_they_were_added_in() -> None:
    def build(reverse: bool) -> workflow_pb2.WorkflowDefinition:
        wf = Workflow("order")
        a, b, c = (wf.action(name, "noop") for name in ("a", "b", "c"))
        calls = [(a.on_success, b), (a.on_failure, c), (b.always, c)]
        for add, target in reversed(calls) if reverse else calls:
            add(target)
        return wf.definition()

    assert build(False) == build(True)


def test_every_kind_of_step_and_edge(tmp_path: Path) -> None:
    wf = Workflow(
        "kinds",
        description="all of it",
        context={"region": "eu"},
        output={"done": "{{ steps.finish.result }}"},
        run_timeout=90,
        continue_on_crash=True,
    )
    start = wf.action(
        "start",
        "jobs.start",
        input={"n": "{{ input.n }}"},
        priority=5,
        labels={"team": "media"},
        locks=[("res:{{ input.n }}", "SHARED")],
        timeouts={
            "start": {
                "duration": "1m",
                "action": "fail",
                "run_request": {
                    "workflow": "fallback",
                    "version": 2,
                    "input": {"x": 1},
                    "context": {"k": "v"},
                },
            }
        },
        retry={"max_attempts": 2, "non_retryable_kinds": ["JOB_ERROR"]},
    )
    pause = wf.delay("pause", "1h30m")
    child = wf.sub_workflow("child", "other", version=3, input={"from": "{{ steps.start.result }}"})
    finish = wf.action("finish", "jobs.finish", join="any", continue_on_crash=True)
    wf.chain(start, pause, child)
    child.on_success(finish).on_failure(finish, when="step.error.kind == 'JOB_ERROR'")
    start.always("finish")
    built = wf.definition()

    assert built.steps[1].delay.duration.seconds == 5400
    assert built.steps[2].workflow.workflow == "other"
    assert built.steps[2].workflow.version == 3
    timeouts = built.steps[0].action.timeouts.start
    assert timeouts.action == job_pb2.START_TIMEOUT_ACTION_FAIL
    assert timeouts.run_request.workflow.workflow == "fallback"
    assert timeouts.run_request.workflow.context["k"] == "v"
    assert built.steps[0].action.retry_policy.non_retryable_kinds == [job_pb2.ERROR_KIND_JOB_ERROR]
    assert built.continue_on_crash
    assert built.steps[3].continue_on_crash
    assert duration_seconds(built.run_timeout) == 90

    as_file: dict[str, Any] = {
        "name": "kinds",
        "description": "all of it",
        "context": {"region": "eu"},
        "output": {"done": "{{ steps.finish.result }}"},
        "run_timeout": "90s",
        "continue_on_crash": True,
        "steps": [
            {
                "name": "start",
                "action": "jobs.start",
                "input": {"n": "{{ input.n }}"},
                "priority": 5,
                "labels": {"team": "media"},
                "locks": [{"resource": "res:{{ input.n }}", "mode": "shared"}],
                "timeouts": {
                    "start": {
                        "duration": 60,
                        "action": "FAIL",
                        "run_request": {
                            "workflow": "fallback",
                            "version": 2,
                            "input": {"x": 1},
                            "context": {"k": "v"},
                        },
                    }
                },
                "retry": {"max_attempts": 2, "non_retryable_kinds": "job_error"},
                "on_success": "pause",
                "always": ["finish"],
            },
            {"name": "pause", "delay": "90m", "on_success": ["child"]},
            {
                "name": "child",
                "workflow": "other",
                "version": 3,
                "input": {"from": "{{ steps.start.result }}"},
            },
            {"name": "finish", "action": "jobs.finish", "join": "any", "continue_on_crash": True},
        ],
        "edges": [
            {"source": "child", "target": "finish"},
            {
                "source": "child",
                "target": "finish",
                "kind": "failure",
                "when": "step.error.kind == 'JOB_ERROR'",
            },
        ],
    }
    path = tmp_path / "kinds.json"
    path.write_text(json.dumps(as_file))
    assert load_workflow(path).definition() == built


BAD_FILES = [
    ("name = 'x'\n[[steps]]\nname = 'a'\n", "x.toml: step 'a': a step is one of: an action step"),
    (
        "name = 'x'\n[[steps]]\nname = 'a'\naction = 'n'\ndelay = '1s'\n",
        "it has action and delay",
    ),
    (
        "name = 'x'\n[[steps]]\nname = 'a'\naction = 'n'\ntimeout = '1s'\n",
        "x.toml: step 'a': unknown field(s) 'timeout'",
    ),
    (
        "name = 'x'\n[[steps]]\nname = 'a'\naction = 'n'\ntimeouts = { heartbeat = 'soon' }\n",
        "x.toml: step 'a': timeouts.heartbeat: 'soon' is not a duration",
    ),
    (
        "name = 'x'\n[[steps]]\nname = 'a'\naction = 'n'\non_success = ['b']\n",
        "x.toml: step 'a': on_success[0]: no step named 'b' (steps: a)",
    ),
    (
        "name = 'x'\n[[steps]]\nname = 'a'\naction = 'n'\n[[steps]]\nname = 'a'\naction = 'n'\n",
        "x.toml: step 'a': a step of that name was already added",
    ),
    ("name = 'x'\n[[steps]]\nname = 'a b'\naction = 'n'\n", "x.toml: 'a b' is not a step name"),
    ("name = 'x y'\n[[steps]]\nname = 'a'\naction = 'n'\n", "x.toml: name: 'x y' is not a workflow name"),
    ("name = 'x'\n", "x.toml: steps: a workflow needs a list of steps"),
    ("steps = []\n", "x.toml: name: missing"),
    ("name = 'x'\nstep = []\n", "x.toml: the top level: unknown field(s) 'step'"),
    (
        "name = 'x'\n[[steps]]\nname = 'a'\naction = 'n'\njoin = 'some'\n",
        "x.toml: step 'a': join: 'some' is not a join mode (all or any)",
    ),
    (
        "name = 'x'\n[[steps]]\nname = 'a'\naction = 'n'\nretry = { max_attempts = 0 }\n",
        "x.toml: step 'a': retry: max_attempts must be between 1 and 1000, got 0",
    ),
    (
        "name = 'x'\n[[steps]]\nname = 'a'\naction = 'n'\nlocks = ['r:WRITE']\n",
        "x.toml: step 'a': locks[0]: unknown lock mode 'WRITE'",
    ),
    (
        "name = 'x'\n[[steps]]\nname = 'a'\naction = 'n'\non_failure = [{ step = 'a' }]\n",
        "x.toml: step 'a': on_failure[0]: an edge from a step to itself makes a cycle",
    ),
    (
        "name = 'x'\n[[steps]]\nname = 'a'\naction = 'n'\n"
        "[[edges]]\nsource = 'a'\ntarget = 'b'\nkind = 'maybe'\n",
        "x.toml: edges[0].kind: 'maybe' is not success, failure or always",
    ),
    (
        "name = 'x'\n[[steps]]\nname = 'a'\ndelay = 'tomorrow'\n",
        "x.toml: step 'a': delay: 'tomorrow' is not a duration",
    ),
    ("name = 'x'\n[[steps]\n", "x.toml: not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_a_bad_file_is_refused_naming_the_file_step_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(WorkflowDefinitionError) as caught:
        load_workflow(path).definition()
    assert str(caught.value).startswith(str(tmp_path) + "/") or "x.toml" in str(caught.value)
    assert message.replace("x.toml", str(path)) in str(caught.value)


def test_bad_yaml_json_and_suffix(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(WorkflowDefinitionError, match=r"bad\.yaml: not valid YAML"):
        load_workflow(tmp_path / "bad.yaml")
    (tmp_path / "list.yml").write_text("- a\n- b\n")
    with pytest.raises(WorkflowDefinitionError, match=r"list\.yml: must hold a table .* got list"):
        load_workflow(tmp_path / "list.yml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(WorkflowDefinitionError, match=r"bad\.json: not valid JSON"):
        load_workflow(tmp_path / "bad.json")
    (tmp_path / "flow.txt").write_text("")
    with pytest.raises(WorkflowDefinitionError, match=r"flow\.txt: cannot tell the file's format"):
        load_workflow(tmp_path / "flow.txt")
    with pytest.raises(WorkflowDefinitionError, match=r"missing\.toml: cannot read the file: no such file"):
        load_workflow(tmp_path / "missing.toml")


def test_builder_mistakes_name_the_workflow_and_step() -> None:
    wf = Workflow("w")
    a = wf.action("a", "noop")
    with pytest.raises(WorkflowDefinitionError, match=r"^workflow 'w': step 'b': priority must be between"):
        wf.action("b", "noop", priority=10**7)
    with pytest.raises(
        WorkflowDefinitionError, match=r"^workflow 'w': step 'c': action: must name an action"
    ):
        wf.action("c", "")
    other = Workflow("v")
    stranger = other.action("s", "noop")
    with pytest.raises(
        WorkflowDefinitionError, match=r"step 'a': an edge goes to step 's' of another workflow"
    ):
        a.on_success(stranger)
    a.on_success("later")
    with pytest.raises(WorkflowDefinitionError, match=r"step 'a': an edge goes to 'later', which is no step"):
        wf.definition()
    with pytest.raises(WorkflowDefinitionError, match=r"the same edge to 'later' was added twice"):
        a.on_success("later")
    with pytest.raises(WorkflowDefinitionError, match=r"^workflow 'w': no step named 'zz' \(steps: a"):
        wf.step("zz")
    with pytest.raises(WorkflowDefinitionError, match=r"at least one step"):
        Workflow("empty").definition()
    with pytest.raises(WorkflowDefinitionError, match=r"input: must be a table"):
        wf.action("d", "noop", input=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match=r"timeouts: unknown field\(s\) 'heartbeats'"):
        wf.action("e", "noop", timeouts={"heartbeats": 3})
    with pytest.raises(WorkflowDefinitionError, match=r"run_request: name either an action or a workflow"):
        wf.action("f", "noop", timeouts={"start": {"run_request": {"input": {}}}})
    # The refused steps were not added.
    assert [step.name for step in wf.steps] == ["a"]


def test_settings_may_change_before_the_definition_is_made() -> None:
    wf = Workflow("later")
    wf.action("a", "noop")
    wf.output = {"a": "{{ steps.a.result }}"}
    wf.run_timeout = "2m"
    wf.context["region"] = "eu"
    built = wf.definition()
    assert struct_to_dict(built.output) == {"a": "{{ steps.a.result }}"}
    assert duration_seconds(built.run_timeout) == 120
    assert dict(built.context) == {"region": "eu"}
    wf.run_timeout = "whenever"
    with pytest.raises(
        WorkflowDefinitionError, match=r"^workflow 'later': run_timeout: 'whenever' is not a duration"
    ):
        wf.definition()


def test_a_mapping_reads_like_a_file() -> None:
    wf = workflow_from_mapping({"name": "m", "steps": [{"name": "only", "action": "noop"}]})
    assert wf.definition().steps[0].action.action == "noop"
    assert isinstance(wf.definition(), workflow_pb2.WorkflowDefinition)
