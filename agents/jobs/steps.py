"""The real pipelines' step kinds and reconciliation rules, registered in one place.

One module per step kind exports its `KIND` (the registry entry, defined with the step
definitions in agents/jobs/kinds.py) and its `handler(jc)` (an agent kind) — `render` runs on
the render queue and has no agent handler. Each handler is ``async (ctx, request) ->
StepOutput``; CPU and file work runs in the step executor, never on the event loop. Permanent
problems (a file that is not a video) raise PermanentStepError. The worker
(agents/worker.py) calls `make_handlers` once.
"""

from __future__ import annotations

from agents.jobs import (
    booking_step,
    copy_step,
    deliver_step,
    group_step,
    landing,
    phases_step,
    photos_step,
    probe_step,
    publish,
    qr_step,
    render,
)
from agents.jobs import sessions as jump_sessions
from agents.jobs.context import JobContext
from agents.pipeline.handlers import Handlers


def make_handlers(jc: JobContext, handlers: Handlers) -> None:
    """Register the real step kinds with their handlers, and the reconciliation rules."""
    handlers.add(copy_step.KIND, copy_step.handler(jc))
    handlers.add(probe_step.KIND, probe_step.handler(jc))
    handlers.add(qr_step.KIND, qr_step.handler(jc))
    handlers.add(group_step.KIND, group_step.handler(jc))
    handlers.add(booking_step.KIND, booking_step.handler(jc))
    handlers.add(phases_step.KIND, phases_step.handler(jc))
    handlers.add(render.KIND)
    handlers.add(publish.KIND, publish.handler(jc))
    handlers.add(photos_step.KIND, photos_step.handler(jc))  # issue 16
    handlers.add(deliver_step.KIND, deliver_step.handler(jc))  # issue 16: the email

    # what the reconciler re-derives from PostgreSQL for these pipelines (lost messages)

    async def landed() -> int:
        return await landing.reconcile_landed(jc)

    async def requested() -> int:
        return await landing.reconcile_requested(jc)

    async def groups() -> int:
        return await jump_sessions.reconcile_groups(jc)

    handlers.registry.add_check("copies-landed", landed)
    handlers.registry.add_check("copies-requested", requested)
    handlers.registry.add_check("groups", groups)
    handlers.registry.add_check("renders", render.RenderCheck(jc))
