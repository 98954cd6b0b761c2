"""Records on the wire: JSON round trips and batched step requests."""

from __future__ import annotations

import pytest

from agents.pipeline.dispatch import REQUEST_BATCH, Emitter, send_requests
from agents.pipeline.step import StepStatus
from storage.pipeline import Saved
from streams import records


def test_batched_request_expands_to_one_request_per_step() -> None:
    req = records.StepRequest(
        execution_id=7,
        step="a",
        kind="noop",
        attempt=1,
        input={"x": 1},
        more=[{"step": "b", "kind": "noop", "attempt": 2, "input": None}],
    )
    back = records.decode(records.StepRequest, records.encode(req))
    assert [(r.step, r.attempt, r.input) for r in back.expand()] == [
        ("a", 1, {"x": 1}),
        ("b", 2, None),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"step": 1, "kind": "noop", "attempt": 1},
        {"step": "b"},
        "b",
        {"step": "b", "kind": "k", "attempt": "1"},
    ],
)
def test_a_malformed_batch_entry_is_refused(bad: object) -> None:
    req = records.StepRequest(execution_id=7, step="a", kind="noop", attempt=1, more=[bad])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="bad step"):
        req.expand()


async def test_ready_steps_travel_in_batches_per_execution() -> None:
    sent: list[records.StepRequest] = []

    async def send(key: bytes, value: bytes) -> None:
        sent.append(records.decode(records.StepRequest, value))

    ready = [
        Saved(1, i, f"n:{i:04d}", "noop", StepStatus.READY, 1, {}, None)
        for i in range(REQUEST_BATCH + 3)
    ]
    ready.append(Saved(2, 9999, "other", "noop", StepStatus.READY, 1, {}, None))
    assert await send_requests(Emitter(send), ready, None) == REQUEST_BATCH + 4
    steps = sorted((r.execution_id, r.step) for m in sent for r in m.expand())
    assert steps == sorted([(1, f"n:{i:04d}") for i in range(REQUEST_BATCH + 3)] + [(2, "other")])
    assert len(sent) == 3  # a full batch, the remainder, and the other execution's step
