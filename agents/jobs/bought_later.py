"""A deliverable bought after the jump's pipeline was made (issue 16): its steps are added.

An operator's assign may set the booking's product (`skyreel assign ... --product
video+photos`). The steps a jump runs were decided from the product known when it was grouped
(agents/jobs/sessions.py); when the new product buys something the execution has no step for,
those steps (`render` + `publish`, or `photos`) are added as `jump_steps` would have made them,
the `deliver` step is made to wait for them too, and — when it had finished already — runs
again after them, so the passenger gets one more email for the new deliverable set. Nothing is
ever removed: a deliverable no longer bought is skipped by its own step (the photos step reads
the product when it runs).
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.deliverables import deliverables_of
from agents.jobs.kinds import jump_steps
from agents.pipeline import dag
from agents.pipeline import operations as ops
from agents.pipeline.dispatch import Emitter, send_requests
from agents.pipeline.registry import Registry
from storage import deliveries
from storage import pipeline as repo

logger = logging.getLogger(__name__)

ADDABLE = ("render", "publish", "photos")


async def add_bought_steps(
    engine: AsyncEngine,
    emitter: Emitter,
    registry: Registry,
    *,
    key: str,
    execution_id: int,
    product: str,
    default_product: str,
    actor: str,
) -> list[str]:
    """Add the steps `product` buys that execution `execution_id` lacks; returns their names."""
    bought = deliverables_of(product, default_product)
    async with engine.begin() as conn:
        await repo.lock_execution(conn, execution_id)
        states = await ops.load_states(conn, execution_id)
        want = {
            d.name: d
            for d in jump_steps(
                key,
                [],
                edit="phases" in states,
                deliverables=bought.deliverables,
                deliver="deliver" in states,
            )
        }
        new = [want[n] for n in ADDABLE if n in want and n not in states]
        if not new:
            return []
        await repo.add_steps(
            conn,
            execution_id,
            [registry.new_step(d.name, d.kind, depends_on=d.depends_on) for d in new],
            {d.name: dict(d.input or {}) for d in new},
        )
        deliver = states.get("deliver")
        if deliver is not None and "deliver" in want:
            await deliveries.set_depends_on(
                conn, execution_id, "deliver", list(want["deliver"].depends_on)
            )
        why = f"product {product!r} set by {actor}: {', '.join(d.name for d in new)} added"
        if deliver is not None and deliver.status in dag.TERMINAL:
            ready = await ops.rerun_step(conn, execution_id, "deliver", actor, why)
        else:
            ready = await ops.promote_all(conn, execution_id)
            await ops.refresh_execution_status(conn, execution_id)
    await send_requests(emitter, ready, None)
    logger.info("execution %d (session %s): %s", execution_id, key, why)
    return [d.name for d in new]
