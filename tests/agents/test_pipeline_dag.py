"""Tests of the pure DAG core: transitions, readiness, spawning, validation (the properties
over random DAGs are in test_pipeline_properties.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest

from agents.pipeline import dag
from agents.pipeline.dag import (
    ExecutionStatus,
    Failure,
    StepState,
    StepStatus,
    Success,
    Waiting,
)
from agents.pipeline.errors import (
    CycleError,
    InvalidDag,
    InvalidTransition,
    PermanentStepError,
    RetryableStepError,
    SpawnConflict,
    UnknownDependency,
)
from agents.pipeline.registry import StepKind

POLICY = StepKind("test", max_attempts=3, backoff_base_s=0.5, backoff_cap_s=4.0)


def step(name: str, *deps: str, spawns: Iterable[str] = (), max_attempts: int = 1) -> StepState:
    return StepState(
        name=name,
        kind="noop",
        depends_on=frozenset(deps),
        spawns=frozenset(spawns),
        max_attempts=max_attempts,
    )


def merge(steps: dict[str, StepState], changed: Iterable[StepState]) -> None:
    for s in changed:
        steps[s.name] = s


def run_to_end(steps: dict[str, StepState]) -> list[list[str]]:
    """Run everything to success in waves; returns the names started in each wave."""
    waves: list[list[str]] = []
    while True:
        merge(steps, dag.promote_ready(steps.values()))
        wave = [n for n, s in sorted(steps.items()) if s.status is StepStatus.READY]
        if not wave:
            return waves
        for name in wave:
            steps[name] = dag.start(steps[name], steps[name].attempt)
        for name in wave:
            steps[name] = dag.apply_result(steps[name], steps[name].attempt, Success(), POLICY)
        waves.append(wave)


def running(s: StepState) -> StepState:
    return dag.start(dag.mark_ready(s), 1)


# --- examples -------------------------------------------------------------------------------


def test_diamond_runs_the_middle_in_parallel_and_joins() -> None:
    steps = dag.index([step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")])
    assert dag.execution_status(steps.values()) is ExecutionStatus.PENDING
    assert run_to_end(steps) == [["a"], ["b", "c"], ["d"]]
    assert dag.execution_status(steps.values()) is ExecutionStatus.SUCCEEDED
    assert all(s.attempt == 1 for s in steps.values())


def test_wide_dag_fans_out_then_in() -> None:
    leaves = [step(f"leaf:{i:03d}", "root") for i in range(200)]
    steps = dag.index([step("root"), *leaves, step("join", "leaf:*")])
    waves = run_to_end(steps)
    assert waves[0] == ["root"]
    assert len(waves[1]) == 200
    assert waves[2] == ["join"]
    assert dag.execution_status(steps.values()) is ExecutionStatus.SUCCEEDED


def test_ready_steps_are_sorted_and_only_pending() -> None:
    steps = [step("z"), step("a"), dataclasses.replace(step("m"), status=StepStatus.READY)]
    assert dag.ready_steps(steps) == ["a", "z"]


# --- transitions ------------------------------------------------------------------------------


def test_mark_ready_opens_attempt_one() -> None:
    ready = dag.mark_ready(step("a"))
    assert (ready.status, ready.attempt) == (StepStatus.READY, 1)
    assert dag.mark_ready(ready) is ready
    with pytest.raises(InvalidTransition):
        dag.mark_ready(dag.start(ready, 1))


def test_start_twice_for_the_same_attempt_is_recognised() -> None:
    ready = dag.mark_ready(step("a"))
    started = dag.start(ready, 1)
    assert started.status is StepStatus.RUNNING
    assert dag.start(started, 1) is started
    done = dag.succeed(started, 1)
    assert dag.start(done, 1) is done


def test_start_rejects_pending_and_undispatched_attempts() -> None:
    with pytest.raises(InvalidTransition, match="dependencies"):
        dag.start(step("a"), 0)
    with pytest.raises(InvalidTransition, match="never dispatched"):
        dag.start(dag.mark_ready(step("a")), 2)


def test_stale_start_after_requeue_is_ignored() -> None:
    requeued = dag.requeue(running(step("a")))
    assert (requeued.status, requeued.attempt) == (StepStatus.READY, 2)
    assert dag.start(requeued, 1) is requeued


def test_duplicate_and_stale_results_are_ignored() -> None:
    run = running(step("a", max_attempts=3))
    retried = dag.apply_result(run, 1, Failure("timeout", retryable=True), POLICY)
    assert (retried.status, retried.attempt, retried.error) == (StepStatus.READY, 2, "timeout")
    assert dag.apply_result(retried, 1, Failure("timeout", retryable=True), POLICY) is retried
    assert dag.apply_result(retried, 1, Success(), POLICY) is retried
    run2 = dag.start(retried, 2)
    done = dag.apply_result(run2, 2, Success(), POLICY)
    assert done.status is StepStatus.SUCCEEDED and done.error == ""
    assert dag.apply_result(done, 2, Success(), POLICY) is done
    assert dag.apply_result(done, 2, Failure("late", retryable=False), POLICY) is done


def test_result_for_an_undispatched_attempt_is_rejected() -> None:
    with pytest.raises(InvalidTransition):
        dag.apply_result(running(step("a")), 2, Success(), POLICY)


def test_result_before_claim_is_rejected() -> None:
    with pytest.raises(InvalidTransition, match="not running"):
        dag.apply_result(dag.mark_ready(step("a")), 1, Success(), POLICY)


def test_retryable_failure_backs_off_until_attempts_run_out() -> None:
    s = running(step("a", max_attempts=3))
    s = dag.fail(s, 1, "busy", retryable=True, policy=POLICY)
    assert (s.status, s.attempt, s.backoff_s) == (StepStatus.READY, 2, 0.5)
    s = dag.fail(dag.start(s, 2), 2, "busy", retryable=True, policy=POLICY)
    assert (s.status, s.attempt, s.backoff_s) == (StepStatus.READY, 3, 1.0)
    s = dag.fail(dag.start(s, 3), 3, "busy", retryable=True, policy=POLICY)
    assert (s.status, s.attempt, s.error) == (StepStatus.FAILED, 3, "busy")


def test_permanent_failure_fails_at_once() -> None:
    s = running(step("a", max_attempts=5))
    failed = dag.apply_result(s, 1, Failure.from_error(PermanentStepError("corrupt file")), POLICY)
    assert (failed.status, failed.attempt, failed.error) == (StepStatus.FAILED, 1, "corrupt file")
    assert Failure.from_error(RetryableStepError("x")) == Failure("x", retryable=True)


def test_manual_retry_goes_beyond_max_attempts() -> None:
    failed = dag.fail(running(step("a")), 1, "boom", retryable=True, policy=POLICY)
    assert failed.status is StepStatus.FAILED
    again = dag.retry(failed)
    assert (again.status, again.attempt, again.error) == (StepStatus.READY, 2, "")
    with pytest.raises(InvalidTransition):
        dag.retry(again)


def test_backoff_is_exponential_and_capped() -> None:
    assert [dag.backoff_delay(POLICY, n) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]
    assert dag.backoff_delay(POLICY, 10_000) == 4.0
    with pytest.raises(ValueError):
        dag.backoff_delay(POLICY, 0)


def test_cancel_and_skip() -> None:
    assert dag.cancel(running(step("a"))).status is StepStatus.CANCELLED
    done = dag.succeed(running(step("a")), 1)
    assert dag.cancel(done) is done
    skipped = dag.skip(step("a"))
    assert skipped.status is StepStatus.SKIPPED and dag.skip(skipped) is skipped
    with pytest.raises(InvalidTransition):
        dag.skip(running(step("a")))


def test_skipped_dependency_counts_as_done() -> None:
    steps = dag.index([dag.skip(step("a")), step("b", "a")])
    assert dag.ready_steps(steps.values()) == ["b"]


def test_waiting_step_makes_the_execution_wait_then_moves_on() -> None:
    steps = dag.index([step("booking"), step("render", "booking")])
    merge(steps, dag.promote_ready(steps.values()))
    steps["booking"] = dag.start(steps["booking"], 1)
    waiting = dag.apply_result(steps["booking"], 1, Waiting("needs review"), POLICY)
    assert waiting.waiting_for == "needs review"
    assert dag.apply_result(waiting, 1, Waiting("needs review"), POLICY) is waiting
    steps["booking"] = waiting
    assert dag.execution_status(steps.values()) is ExecutionStatus.WAITING
    steps["booking"] = dag.apply_result(waiting, 1, Success(), POLICY)
    assert steps["booking"].waiting_for == ""
    assert run_to_end(steps) == [["render"]]


def test_requeue_of_a_waiting_step_opens_a_new_attempt() -> None:
    waiting = dag.wait(running(step("a")), 1, "booking")
    again = dag.requeue(waiting)
    assert (again.status, again.attempt, again.waiting_for) == (StepStatus.READY, 2, "")
    with pytest.raises(InvalidTransition):
        dag.requeue(again)


def test_state_normalises_row_values() -> None:
    row = StepState(name="a", kind="k", depends_on=["b"], status="running")  # type: ignore[arg-type]
    assert row.depends_on == frozenset({"b"}) and row.status is StepStatus.RUNNING


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "non-empty"),
        ({"name": "a*"}, "non-empty"),
        ({"depends_on": frozenset({"x*y"})}, "last character"),
        ({"spawns": frozenset({"probe:"})}, "must end in"),
        ({"attempt": -1}, "attempt"),
        ({"max_attempts": 0}, "max_attempts"),
    ],
)
def test_bad_step_definitions_are_refused(kwargs: dict[str, object], match: str) -> None:
    fields: dict[str, object] = {"name": "a", "kind": "k", **kwargs}
    with pytest.raises(InvalidDag, match=match):
        StepState(**fields)  # type: ignore[arg-type]


# --- validation ---------------------------------------------------------------------------


def test_unknown_dependency_is_named() -> None:
    with pytest.raises(UnknownDependency) as err:
        dag.validate_dag([step("a", "ghost")])
    assert (err.value.step, err.value.dependency) == ("a", "ghost")


def test_cycle_is_named_in_dependency_order() -> None:
    with pytest.raises(CycleError) as err:
        dag.validate_dag([step("a", "b"), step("b", "d"), step("c", "b"), step("d", "c")])
    assert err.value.cycle == ["b", "d", "c", "b"]  # "a" waits on the cycle but is not in it
    assert "b -> d -> c -> b" in str(err.value)


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(CycleError) as err:
        dag.validate_dag([step("a", "a")])
    assert err.value.cycle == ["a", "a"]


def test_pattern_matching_itself_is_a_cycle() -> None:
    with pytest.raises(CycleError) as err:
        dag.validate_dag([step("probe:all", "probe:*")])
    assert err.value.cycle == ["probe:all", "probe:all"]


def test_spawner_waiting_for_its_own_pattern_is_a_cycle() -> None:
    with pytest.raises(CycleError):
        dag.validate_dag([step("diff", "copy:*", spawns=["copy:*"])])


def test_cycle_through_a_pattern_dependency() -> None:
    steps = [step("diff", "render", spawns=["probe:*"]), step("render", "probe:*")]
    with pytest.raises(CycleError) as err:
        dag.validate_dag(steps)
    assert set(err.value.cycle) == {"diff", "render"}


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(InvalidDag, match="duplicate"):
        dag.validate_dag([step("a"), step("a")])


def test_wrong_spawn_lineage_is_refused() -> None:
    child = dataclasses.replace(step("other:1"), spawned_by="diff")
    with pytest.raises(InvalidDag, match="may only spawn"):
        dag.validate_dag([step("diff", spawns=["copy:*"]), child])
    orphan = dataclasses.replace(step("copy:1"), spawned_by="nobody")
    with pytest.raises(InvalidDag, match="unknown step"):
        dag.validate_dag([orphan])


def test_patterns_may_match_nothing() -> None:
    dag.validate_dag([step("render", "probe:*")])
    assert dag.ready_steps([step("render", "probe:*")]) == ["render"]


# --- failure, blocking, retry -------------------------------------------------------------


def test_failure_blocks_only_its_dependents() -> None:
    steps = dag.index(
        [step("a"), step("b", "a"), step("c", "b"), step("x"), step("y", "x"), step("j", "c", "y")]
    )
    merge(steps, dag.promote_ready(steps.values()))
    steps["a"] = dag.fail(dag.start(steps["a"], 1), 1, "boom", retryable=False, policy=POLICY)
    run_to_end(steps)
    assert {n for n, s in steps.items() if s.status is StepStatus.SUCCEEDED} == {"x", "y"}
    assert dag.blocked_by_failure(steps.values()) == ["b", "c", "j"]
    assert dag.execution_status(steps.values()) is ExecutionStatus.FAILED

    merge(steps, dag.retry_execution(steps.values()))
    run_to_end(steps)
    assert dag.execution_status(steps.values()) is ExecutionStatus.SUCCEEDED
    assert {n: s.attempt for n, s in steps.items()} == {
        "a": 2,
        "b": 1,
        "c": 1,
        "j": 1,
        "x": 1,
        "y": 1,
    }


def test_cancelled_dependency_blocks_and_cancels_the_execution() -> None:
    steps = dag.index([step("a"), step("b", "a")])
    merge(steps, dag.promote_ready(steps.values()))
    steps["a"] = dag.cancel(steps["a"])
    assert dag.blocked_by_failure(steps.values()) == ["b"]
    assert dag.execution_status(steps.values()) is ExecutionStatus.CANCELLED
    merge(steps, dag.cancel_execution(steps.values()))
    assert {s.status for s in steps.values()} == {StepStatus.CANCELLED}
    assert dag.cancel_execution(steps.values()) == []


def test_execution_status_is_running_once_something_started() -> None:
    steps = dag.index([step("a"), step("b")])
    merge(steps, dag.promote_ready(steps.values()))
    assert dag.execution_status(steps.values()) is ExecutionStatus.PENDING
    steps["a"] = dag.start(steps["a"], 1)
    assert dag.execution_status(steps.values()) is ExecutionStatus.RUNNING
    assert dag.execution_status([]) is ExecutionStatus.PENDING


# --- spawning -----------------------------------------------------------------------------


def session() -> dict[str, StepState]:
    """diff spawns copies and probes; each copy spawns its probe; render waits for all probes."""
    return dag.index([step("diff", spawns=["copy:*", "probe:*"]), step("render", "probe:*")])


def test_pattern_dependency_waits_for_the_spawner_and_everything_it_spawns() -> None:
    steps = session()
    merge(steps, dag.promote_ready(steps.values()))
    assert steps["render"].status is StepStatus.PENDING  # no probes yet, but diff may add some
    steps["diff"] = dag.start(steps["diff"], 1)
    copies = [step(f"copy:{f}", spawns=[f"probe:{f}*"]) for f in ("f1", "f2")]
    merge(steps, dag.spawn(steps.values(), copies, spawner="diff"))
    steps["diff"] = dag.succeed(steps["diff"], 1)
    # Copies may still spawn probes: render must not be ready although no probe exists.
    assert dag.ready_steps(steps.values()) == ["copy:f1", "copy:f2"]
    merge(steps, dag.promote_ready(steps.values()))
    for f in ("f1", "f2"):
        name = f"copy:{f}"
        steps[name] = dag.start(steps[name], 1)
        probe = step(f"probe:{f}", name)
        merge(steps, dag.spawn(steps.values(), [probe], spawner=name))
        steps[name] = dag.succeed(steps[name], 1)
    assert dag.ready_steps(steps.values()) == ["probe:f1", "probe:f2"]
    waves = run_to_end(steps)
    assert waves == [["probe:f1", "probe:f2"], ["render"]]
    assert steps["probe:f1"].spawned_by == "copy:f1"


def test_spawn_is_idempotent_under_redelivery() -> None:
    steps = session()
    steps["diff"] = running(steps["diff"])
    batch = [step(f"copy:{i:02d}") for i in range(20)]
    added = dag.spawn(steps.values(), batch, spawner="diff")
    assert [s.name for s in added] == [f"copy:{i:02d}" for i in range(20)]
    merge(steps, added)
    assert dag.spawn(steps.values(), batch, spawner="diff") == []
    assert dag.spawn(steps.values(), [*batch, batch[0]], spawner="diff") == []
    steps["diff"] = dag.succeed(steps["diff"], 1)
    # A redelivery after the spawner finished still adds nothing and is not an error.
    assert dag.spawn(steps.values(), batch, spawner="diff") == []
    assert len(steps) == 22


def test_spawn_of_a_different_definition_conflicts() -> None:
    steps = session()
    steps["diff"] = running(steps["diff"])
    merge(steps, dag.spawn(steps.values(), [step("copy:a")], spawner="diff"))
    with pytest.raises(SpawnConflict, match="another definition"):
        dag.spawn(steps.values(), [step("copy:a", "render")], spawner="diff")
    with pytest.raises(SpawnConflict, match="another definition"):
        dag.spawn(steps.values(), [step("copy:b"), step("copy:b", "copy:a")], spawner="diff")


def test_only_a_running_spawner_adds_steps() -> None:
    steps = session()
    with pytest.raises(SpawnConflict, match="not running"):
        dag.spawn(steps.values(), [step("copy:a")], spawner="diff")
    with pytest.raises(SpawnConflict, match="not a step"):
        dag.spawn(steps.values(), [step("copy:a")], spawner="ghost")


def test_spawner_stays_within_its_patterns() -> None:
    steps = session()
    steps["diff"] = running(steps["diff"])
    with pytest.raises(SpawnConflict, match="may only spawn"):
        dag.spawn(steps.values(), [step("render:2")], spawner="diff")
    with pytest.raises(SpawnConflict, match="wider than"):
        dag.spawn(steps.values(), [step("copy:a", spawns=["render*"])], spawner="diff")


def test_spawn_validates_dependencies_and_cycles() -> None:
    steps = session()
    steps["diff"] = running(steps["diff"])
    with pytest.raises(UnknownDependency):
        dag.spawn(steps.values(), [step("copy:a", "ghost")], spawner="diff")
    # render waits for every step that may spawn probes, so such a step cannot wait for render.
    with pytest.raises(CycleError):
        dag.spawn(steps.values(), [step("copy:a", "render", spawns=["probe:a*"])], spawner="diff")
    assert len(dag.spawn(steps.values(), [step("copy:a", "render")], spawner="diff")) == 1
    with pytest.raises(SpawnConflict, match="pending with attempt 0"):
        dag.spawn(steps.values(), [dag.mark_ready(step("copy:a"))], spawner="diff")


def test_root_step_cannot_break_a_pattern_promise() -> None:
    steps = dag.index([step("render", "probe:*")])
    steps["render"] = running(steps["render"])
    with pytest.raises(SpawnConflict, match="already waited"):
        dag.spawn(steps.values(), [step("probe:late")])
    with pytest.raises(SpawnConflict, match="already waited"):
        dag.spawn(steps.values(), [step("late", spawns=["probe:x*"])])
    assert [s.name for s in dag.spawn(steps.values(), [step("other")])] == ["other"]


# --- settled dependencies ('?'): a failure stays local --------------------------------------------


def by_name(*states: StepState) -> dict[str, StepState]:
    return {s.name: s for s in states}


def _finish(steps: dict[str, StepState], name: str, outcome: Success | Failure) -> None:
    steps[name] = dag.start(steps[name], steps[name].attempt)
    steps[name] = dag.apply_result(steps[name], steps[name].attempt, outcome, POLICY)


def test_a_settled_dependency_goes_on_after_a_failure_a_plain_one_does_not() -> None:
    steps = by_name(
        step("probe:1"), step("probe:2"), step("render", "?probe:*"), step("strict", "probe:*")
    )
    merge(steps, dag.promote_ready(steps.values()))
    _finish(steps, "probe:1", Success())
    assert dag.ready_steps(steps.values()) == []  # probe:2 still running
    _finish(steps, "probe:2", Failure("not a readable video", retryable=False))
    assert dag.ready_steps(steps.values()) == ["render"]
    assert dag.blocked_by_failure(steps.values()) == ["strict"]


def test_a_settled_dependency_still_waits_for_every_spawner_to_succeed() -> None:
    steps = by_name(step("copy:1", spawns=("probe:1*",)), step("render", "?probe:*"))
    merge(steps, dag.promote_ready(steps.values()))
    _finish(steps, "copy:1", Failure("card pulled", retryable=False))
    assert dag.ready_steps(steps.values()) == []
    assert dag.blocked_by_failure(steps.values()) == ["render"]


def test_retrying_a_failed_step_runs_again_what_went_on_without_it() -> None:
    steps = by_name(
        step("probe:1"),
        step("probe:2"),
        step("render", "?probe:*"),
        step("publish", "render"),
        step("other"),
    )
    merge(steps, dag.promote_ready(steps.values()))
    _finish(steps, "probe:1", Success())
    _finish(steps, "other", Success())
    _finish(steps, "probe:2", Failure("truncated", retryable=False))
    run_to_end(steps)
    assert steps["publish"].status is StepStatus.SUCCEEDED
    assert dag.execution_status(steps.values()) is ExecutionStatus.FAILED

    changed = dag.retry_execution(steps.values())
    assert {s.name: s.status for s in changed} == {
        "probe:2": StepStatus.READY,
        "render": StepStatus.PENDING,
        "publish": StepStatus.PENDING,
    }
    merge(steps, changed)
    assert dag.ready_steps(steps.values()) == []  # render waits for the retried probe
    _finish(steps, "probe:2", Success())
    waves = run_to_end(steps)
    assert waves == [["render"], ["publish"]]
    assert steps["render"].attempt == 2
    assert dag.execution_status(steps.values()) is ExecutionStatus.SUCCEEDED


def test_redo_only_moves_a_done_step() -> None:
    with pytest.raises(InvalidTransition):
        dag.redo(dataclasses.replace(step("a"), status=StepStatus.FAILED))
    pending = step("a")
    assert dag.redo(pending) is pending


def test_names_may_not_start_with_the_settled_marker() -> None:
    with pytest.raises(InvalidDag):
        step("?probe")
    with pytest.raises(InvalidDag):
        step("a", "??probe:*")
    with pytest.raises(InvalidDag):
        step("a", spawns=("?probe:*",))


def _running(name: str, *deps: str, attempt: int = 1) -> StepState:
    return dataclasses.replace(step(name, *deps), status=StepStatus.RUNNING, attempt=attempt)


def test_an_operator_retry_moves_a_running_step_only_when_its_worker_is_gone_or_forced() -> None:
    running = _running("render", attempt=2)
    with pytest.raises(InvalidTransition, match="live worker"):
        dag.operator_retry(running, worker_gone=False, force=False)
    for gone, force in ((True, False), (False, True)):
        moved = dag.operator_retry(running, worker_gone=gone, force=force)
        assert (moved.status, moved.attempt, moved.error) == (StepStatus.READY, 3, "")
        # the abandoned attempt's late result is stale now
        assert dag.apply_result(moved, 2, Success(), POLICY) is moved
    failed = dataclasses.replace(step("probe"), status=StepStatus.FAILED, attempt=1, error="x")
    assert dag.operator_retry(failed, worker_gone=False, force=False).status is StepStatus.READY
    for status in (StepStatus.SUCCEEDED, StepStatus.PENDING, StepStatus.CANCELLED):
        with pytest.raises(InvalidTransition):
            dag.operator_retry(
                dataclasses.replace(step("s"), status=status), worker_gone=True, force=True
            )
    with pytest.raises(InvalidTransition):
        dag.retry_running(failed)


def test_retry_execution_moves_only_the_running_steps_it_is_given() -> None:
    steps = {
        "a": dataclasses.replace(step("a"), status=StepStatus.FAILED, attempt=1),
        "b": _running("b"),
        "c": _running("c"),
        "d": step("d", "b"),
    }
    changed = {s.name: s for s in dag.retry_execution(steps.values(), ["b", "d", "x"])}
    assert sorted(changed) == ["a", "b"]
    assert changed["b"].status is StepStatus.READY and changed["b"].attempt == 2


def test_a_cancelled_execution_resumes_without_rerunning_what_succeeded() -> None:
    steps = {
        "a": dataclasses.replace(step("a"), status=StepStatus.SUCCEEDED, attempt=1),
        "b": _running("b", "a"),
        "c": step("c", "b"),
    }
    merge(steps, dag.cancel_execution(steps.values()))
    assert dag.execution_status(steps.values()) is ExecutionStatus.CANCELLED
    resumed = dag.resume_execution(steps.values())
    assert sorted(s.name for s in resumed) == ["b", "c"]
    assert all(s.status is StepStatus.PENDING for s in resumed)
    merge(steps, resumed)
    assert steps["a"].status is StepStatus.SUCCEEDED and steps["a"].attempt == 1
    assert dag.ready_steps(steps.values()) == ["b"]
    # b runs again as a new attempt: the cancelled attempt's late result is stale
    ready = dag.mark_ready(steps["b"])
    assert ready.attempt == 2
    assert dag.apply_result(ready, 1, Success(), POLICY) is ready
    with pytest.raises(InvalidTransition):
        dag.resume(steps["a"])
    assert dag.resume(steps["c"]) is steps["c"]  # already pending
