"""Properties of the pipeline core, checked by a simulated scheduler over random DAGs."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pipeline_dag import POLICY, merge, step

from agents.pipeline import dag
from agents.pipeline.dag import ExecutionStatus, Failure, StepState, StepStatus, Success, Waiting

# --- properties: a simulated scheduler over random DAGs -----------------------------------


@dataclasses.dataclass
class Plan:
    roots: list[StepState]
    children: dict[str, list[StepState]]  # what each spawner spawns when it runs

    def all_names(self) -> set[str]:
        names = {s.name for s in self.roots}
        for kids in self.children.values():
            names |= {k.name for k in kids}
        return names

    def definition(self, name: str) -> StepState:
        for s in [*self.roots, *(k for kids in self.children.values() for k in kids)]:
            if s.name == name:
                return s
        raise KeyError(name)

    def waits_for(self, name: str) -> set[str]:
        """The planned steps `name` waits for, directly; an oracle written from the plan."""
        spec = self.definition(name)
        out: set[str] = set()
        for ref in spec.depends_on:
            if ref.endswith("*"):
                owner = "s" + ref[1:3]  # "c03:*" belongs to root s03 and its descendants
                out |= {owner} | {n for n in self.all_names() if n.startswith(ref[:-1])}
            else:
                out.add(ref)
        if spec.spawned_by is not None:
            out.add(spec.spawned_by)  # it exists only once its spawner ran
        return out

    def closure(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = [name]
        while todo:
            for dep in self.waits_for(todo.pop()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    n = draw(st.integers(1, 9))
    roots: list[StepState] = []
    children: dict[str, list[StepState]] = {}
    spawners: list[int] = []
    for i in range(n):
        name = f"s{i:02d}"
        deps = {f"s{j:02d}" for j in draw(st.sets(st.integers(0, max(i - 1, 0)))) if j < i}
        deps |= {f"c{j:02d}:*" for j in spawners if draw(st.booleans())}
        attempts = draw(st.integers(1, 3))
        if draw(st.integers(0, 2)) == 0:
            spawners.append(i)
            kids = []
            for k in range(draw(st.integers(0, 3))):
                kid = f"c{i:02d}:{k}"
                kid_deps = {
                    f"s{j:02d}" for j in draw(st.sets(st.integers(0, max(i - 1, 0)))) if j < i
                }
                grand = draw(st.integers(0, 2))
                kids.append(
                    dataclasses.replace(
                        step(kid, *kid_deps, spawns=[f"{kid}:*"] if grand else []),
                        spawned_by=name,
                    )
                )
                children[kid] = [
                    dataclasses.replace(step(f"{kid}:{g}", kid), spawned_by=kid)
                    for g in range(grand)
                ]
            children[name] = kids
            roots.append(step(name, *deps, spawns=[f"c{i:02d}:*"], max_attempts=attempts))
        else:
            roots.append(step(name, *deps, max_attempts=attempts))
    return Plan(roots, children)


class Sim:
    """Drives an execution with only the pure functions, checking invariants at every move."""

    def __init__(self, plan: Plan, data: st.DataObject) -> None:
        self.plan = plan
        self.data = data
        self.steps = dag.index(plan.roots)
        self.started: list[tuple[str, int]] = []
        self.requeued: set[str] = set()

    def run(self, *, failures: bool) -> None:
        for _ in range(10_000):
            merge(self.steps, dag.promote_ready(self.steps.values()))
            moves = [
                n
                for n, s in sorted(self.steps.items())
                if s.status in (StepStatus.READY, StepStatus.RUNNING)
            ]
            if not moves:
                return
            name = self.data.draw(st.sampled_from(moves))
            if self.steps[name].status is StepStatus.READY:
                self.start(name)
            else:
                self.finish(name, failures=failures)
        raise AssertionError("the simulation did not settle")

    def start(self, name: str) -> None:
        s = self.steps[name]
        for ref in s.depends_on:  # checked against the plan, not the engine's view
            wanted = {ref}
            if ref.endswith("*"):
                wanted = {"s" + ref[1:3]} | {
                    n for n in self.plan.all_names() if n.startswith(ref[:-1])
                }
            for dep in wanted:
                assert dep in self.steps and self.steps[dep].done, f"{name} started before {dep}"
        assert (name, s.attempt) not in self.started, f"{name} started twice at {s.attempt}"
        new = dag.start(s, s.attempt)
        assert new is not s and new.status is StepStatus.RUNNING
        assert dag.start(new, s.attempt) is new  # redelivered claim
        self.started.append((name, s.attempt))
        self.steps[name] = new

    def finish(self, name: str, *, failures: bool) -> None:
        s = self.steps[name]
        choices = ["ok"]
        if failures:
            choices += ["retryable", "permanent", "lost"]
            choices += [] if s.waiting_for else ["wait"]
        choice = self.data.draw(st.sampled_from(choices))
        if choice == "lost" and name in self.requeued:
            choice = "ok"
        kids = self.plan.children.get(name, [])
        if choice == "ok" and kids:
            added = dag.spawn(self.steps.values(), kids, spawner=name)
            merge(self.steps, added)
            assert dag.spawn(self.steps.values(), kids, spawner=name) == []
        elif kids and choice in ("retryable", "permanent"):
            merge(self.steps, dag.spawn(self.steps.values(), kids[:1], spawner=name))
        outcome: Success | Failure | Waiting = Success()
        if choice == "lost":  # reconciliation re-dispatches; the old attempt reports late
            self.requeued.add(name)
            self.steps[name] = new = dag.requeue(s)
            assert dag.apply_result(new, s.attempt, Success(), POLICY) is new
            return
        if choice in ("retryable", "permanent"):
            outcome = Failure(f"{choice} error", retryable=choice == "retryable")
        elif choice == "wait":
            outcome = Waiting("needs a human")
        new = dag.apply_result(s, s.attempt, outcome, POLICY)
        assert new is not s
        # Redelivered result: a duplicate, or stale once a retry opened the next attempt.
        assert dag.apply_result(new, s.attempt, outcome, POLICY) is new
        self.steps[name] = new

    def attempts_started(self, name: str) -> list[int]:
        return [a for n, a in self.started if n == name]


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(plans(), st.data())
def test_a_dag_whose_steps_all_succeed_finishes(plan: Plan, data: st.DataObject) -> None:
    sim = Sim(plan, data)
    sim.run(failures=False)
    assert set(sim.steps) == plan.all_names()
    assert dag.execution_status(sim.steps.values()) is ExecutionStatus.SUCCEEDED
    assert sorted(sim.started) == sorted((n, 1) for n in plan.all_names())


@PROPS
@given(plans(), st.data())
def test_failures_block_only_dependents_and_retry_reruns_only_them(
    plan: Plan, data: st.DataObject
) -> None:
    sim = Sim(plan, data)
    sim.run(failures=True)
    steps = sim.steps
    failed = {n for n, s in steps.items() if s.status is StepStatus.FAILED}
    assert dag.execution_status(steps.values()) is (
        ExecutionStatus.FAILED if failed else ExecutionStatus.SUCCEEDED
    )
    # Independent branches finished: whatever did not succeed waits (transitively) on a failure.
    for name in plan.all_names():
        if name not in steps or steps[name].status is not StepStatus.SUCCEEDED:
            assert ({name} | plan.closure(name)) & failed, name
    blocked = set(dag.blocked_by_failure(steps.values()))
    assert blocked == {n for n, s in steps.items() if s.status is StepStatus.PENDING}

    before = dict(steps)
    retried = dag.retry_execution(steps.values())
    assert {s.name for s in retried} == failed
    merge(steps, retried)
    sim.run(failures=False)
    assert dag.execution_status(steps.values()) is ExecutionStatus.SUCCEEDED
    assert set(steps) == plan.all_names()
    for name, old in before.items():
        new_attempts = [a for a in sim.attempts_started(name) if a > old.attempt]
        if old.status is StepStatus.SUCCEEDED:
            assert steps[name] == old and not new_attempts
        elif old.status is StepStatus.FAILED:
            assert new_attempts == [old.attempt + 1] == [steps[name].attempt]
        else:
            assert old.status is StepStatus.PENDING and sim.attempts_started(name) == [1]
    assert len(sim.started) == len(set(sim.started))
