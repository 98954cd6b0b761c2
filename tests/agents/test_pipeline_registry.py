"""Tests of the step-kind registry: registration, lookups, validation; it stays free of I/O."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agents.pipeline import dag
from agents.pipeline.errors import StepKindConflict, UnknownStepKind
from agents.pipeline.registry import Registry, StepKind


def kinds() -> Registry:
    return Registry(
        [
            StepKind("probe", max_attempts=4),
            StepKind("render", runs_on="render_queue", max_attempts=2, timeout_s=3600),
            StepKind("copy"),
        ]
    )


def test_get_returns_the_registered_kind() -> None:
    registry = kinds()
    assert registry.get("render").runs_on == "render_queue"
    assert "probe" in registry and "publish" not in registry
    assert len(registry) == 3
    assert registry.names() == ["copy", "probe", "render"]
    assert [k.name for k in registry] == ["copy", "probe", "render"]


def test_unknown_kind_names_what_is_known() -> None:
    with pytest.raises(UnknownStepKind) as err:
        kinds().get("publish")
    assert err.value.kind == "publish"
    assert err.value.known == ["copy", "probe", "render"]
    assert "copy, probe, render" in str(err.value)


def test_registering_the_same_kind_twice_is_a_no_op() -> None:
    registry = kinds()
    first = registry.get("probe")
    assert registry.register(StepKind("probe", max_attempts=4)) is first
    assert len(registry) == 3


def test_registering_a_kind_with_other_settings_conflicts() -> None:
    with pytest.raises(StepKindConflict) as err:
        kinds().register(StepKind("probe", max_attempts=9))
    assert err.value.kind == "probe"


def test_running_on_splits_agent_and_render_queue_kinds() -> None:
    registry = kinds()
    assert [k.name for k in registry.running_on("agent")] == ["copy", "probe"]
    assert [k.name for k in registry.running_on("render_queue")] == ["render"]


@pytest.mark.parametrize(
    "bad",
    [
        {"name": ""},
        {"name": "probe*"},
        {"runs_on": "thread"},
        {"max_attempts": 0},
        {"backoff_base_s": -1.0},
        {"backoff_base_s": 10.0, "backoff_cap_s": 5.0},
        {"timeout_s": 0.0},
    ],
)
def test_bad_kind_settings_are_refused(bad: dict[str, object]) -> None:
    fields: dict[str, object] = {"name": "probe", **bad}
    with pytest.raises(ValueError):
        StepKind(**fields)  # type: ignore[arg-type]


def test_new_step_takes_its_retry_budget_from_the_kind() -> None:
    step = kinds().new_step("probe:f1", "probe", depends_on=["copy:f1"])
    assert step == dag.StepState(
        name="probe:f1", kind="probe", depends_on=frozenset({"copy:f1"}), max_attempts=4
    )
    with pytest.raises(UnknownStepKind):
        kinds().new_step("x", "publish")


def test_check_reports_a_step_of_an_unknown_kind() -> None:
    registry = kinds()
    registry.check([registry.new_step("a", "copy")])
    with pytest.raises(UnknownStepKind) as err:
        registry.check([registry.new_step("a", "copy"), dag.StepState(name="b", kind="publish")])
    assert err.value.kind == "publish"


def test_check_handlers_wants_exactly_the_kinds_of_a_process() -> None:
    registry = kinds()
    registry.check_handlers(["copy", "probe"], "agent")
    with pytest.raises(UnknownStepKind) as missing:
        registry.check_handlers(["copy"], "agent")
    assert missing.value.kind == "probe"
    with pytest.raises(UnknownStepKind) as extra:
        registry.check_handlers(["copy", "probe", "publish"], "agent")
    assert extra.value.kind == "publish"


def test_a_kind_is_a_backoff_policy() -> None:
    render = kinds().get("render")  # defaults: base 1 s, cap 60 s
    assert [dag.backoff_delay(render, n) for n in (1, 2, 3, 7, 8)] == [1, 2, 4, 60, 60]


def test_the_core_imports_without_faust_or_io_libraries() -> None:
    code = (
        "import sys, agents.pipeline.dag, agents.pipeline.registry, agents.pipeline.errors\n"
        "heavy = {'faust', 'aiokafka', 'redis', 'sqlalchemy', 'asyncpg'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=root)
