"""The DAG edges the status API draws (pure)."""

from __future__ import annotations

from storage.status import dag_edges


def test_settled_and_pattern_dependencies_draw_edges() -> None:
    steps = [
        ("probe:1", []),
        ("probe:2", []),
        ("booking", []),
        ("render", ["?probe:*", "booking"]),
        ("publish", ["render"]),
    ]
    assert dag_edges(steps) == [
        ("booking", "render"),
        ("probe:1", "render"),
        ("probe:2", "render"),
        ("render", "publish"),
    ]


def test_a_pattern_also_waits_for_the_steps_that_may_spawn_a_match() -> None:
    # the core's rule (storage/deps.py): `render` waits for `diff` while it may add a probe
    steps = [("diff", []), ("probe:1", ["diff"]), ("render", ["probe:*"])]
    assert dag_edges(steps, {"diff": ["probe:*"]}) == [
        ("diff", "probe:1"),
        ("diff", "render"),
        ("probe:1", "render"),
    ]
