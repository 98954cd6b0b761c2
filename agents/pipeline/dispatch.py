"""How READY steps leave: to this worker's own runner (the local hand-off) or as batched
`StepRequest`s on `step-requests`.

Requests are keyed `<execution>:<first step>`, so steps spread over partitions and run in
parallel; the ready steps of one execution travel together, `REQUEST_BATCH` a message. In a
worker, `Emitter.hand_off` is the runner's `hand_off` (agents/pipeline/runner.py): the
agent-kind steps it takes are claimed at once and run there, and only the rest is sent, so a
step does not wait for the broker hop (issue 18). Every caller sends after its transaction's
commit: a hand-off inside an open transaction would wait on that transaction's own row locks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from agents.pipeline import trace
from storage import pipeline as repo
from streams import records
from streams.kafka import Send

logger = logging.getLogger(__name__)

#: Takes READY steps to run in this process; returns the (execution id, step) it took. It gets
#: the rows as written, not requests: it claims them first and makes the requests after.
HandOff = Callable[[Sequence[repo.Saved]], Awaitable[set[tuple[int, str]]]]


@dataclass(frozen=True)
class Emitter:
    """Where requests and status events go (Faust topics in a worker, aiokafka elsewhere)."""

    send_request: Send
    send_status: Send | None = None
    #: This worker's own runner (`Runner.hand_off`): the READY steps it takes skip the broker.
    hand_off: HandOff | None = None


def request_key(execution_id: int, step: str) -> bytes:
    return f"{execution_id}:{step}".encode()


def step_request(s: repo.Saved) -> records.StepRequest:
    return records.StepRequest(
        execution_id=s.execution_id, step=s.name, kind=s.kind, attempt=s.attempt, input=s.input
    )


#: Ready steps of one execution sent together in one message (see records.StepRequest.more):
#: a fan-out travels as a few messages, claimed in one transaction each (measured with
#: benchmarks.pipeline_overhead: 32 -> p50 106 ms, 128 -> 60-190 ms, 256 -> 39-52 ms).
REQUEST_BATCH = 256


async def send_requests(
    emitter: Emitter, ready: Iterable[repo.Saved], later: Callable[[float, repo.Saved], None] | None
) -> int:
    """Send the READY steps (batched per execution, REQUEST_BATCH a message); those with a
    future `not_before` go to `later` (or now), those this worker's runner takes
    (`Emitter.hand_off`) are not sent. Returns how many steps were sent."""
    now = datetime.now(UTC)
    due: dict[int, list[repo.Saved]] = defaultdict(list)
    for s in ready:
        delay = (s.not_before - now).total_seconds() if s.not_before else 0.0
        if delay > 0 and later is not None:
            later(delay, s)
            continue
        due[s.execution_id].append(s)
    if emitter.hand_off is not None and due:
        due = await _hand_off(emitter.hand_off, due)
    sent = 0
    for eid, steps in due.items():
        for i in range(0, len(steps), REQUEST_BATCH):
            chunk = steps[i : i + REQUEST_BATCH]
            request = step_request(chunk[0])
            if len(chunk) > 1:
                request.more = [
                    {"step": s.name, "kind": s.kind, "attempt": s.attempt, "input": s.input}
                    for s in chunk[1:]
                ]
            delivery = await emitter.send_request(
                request_key(eid, chunk[0].name), records.encode(request)
            )
            if trace.ON:
                _trace_sent(eid, [s.name for s in chunk], delivery)
            sent += len(chunk)
    return sent


async def _hand_off(
    hand_off: HandOff, due: dict[int, list[repo.Saved]]
) -> dict[int, list[repo.Saved]]:
    """What is left to send once this worker's runner took what it runs itself (issue 18: the
    broker hop was most of a step's ready -> start). Should the hand-off fail, all is sent."""
    try:
        taken = await hand_off([s for steps in due.values() for s in steps])
    except Exception:
        n = sum(map(len, due.values()))
        logger.exception("this worker could not take %d ready steps itself; sending them", n)
        return due
    left = {eid: [s for s in steps if (eid, s.name) not in taken] for eid, steps in due.items()}
    return {eid: steps for eid, steps in left.items() if steps}


def _trace_sent(eid: int, names: list[str], delivery: object) -> None:
    trace.mark("o.sent", eid, names)
    if isinstance(delivery, asyncio.Future):
        delivery.add_done_callback(lambda _: trace.mark("o.acked", eid, names))
