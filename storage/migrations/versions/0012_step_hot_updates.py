"""pipeline_step updated in place (issue 18): no index on a column a step's life changes

A step's status changes three times or more in its life (ready, running, succeeded), and the
1,000-step fan-out's promotion and claim are one 998-row UPDATE each, stamped at their start:
their length is the steps' ready -> start wait. PostgreSQL can write such an update as a
heap-only tuple (HOT: no index entries, the new version on the same page) only when no index
covers a column it changes, predicates included, and the page has room. So:

- ``ix_step_status`` (status) goes; the queries that found steps by status across executions
  (reconciliation, copy landings) start from the unfinished executions instead
  (``ix_execution_status_id``), which are few;
- ``ix_step_name_open`` (name, partial on status) becomes ``ix_step_name`` (name, whole): a
  name never changes;
- ``fillfactor = 50`` leaves each page the room for its rows' next versions.

Measured on the 998-row promotion (its transaction, commit included): 14 ms -> 10 ms.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_step_status", table_name="pipeline_step")
    op.drop_index("ix_step_name_open", table_name="pipeline_step")
    op.create_index("ix_step_name", "pipeline_step", ["name"])
    op.execute("ALTER TABLE pipeline_step SET (fillfactor = 50)")


def downgrade() -> None:
    op.execute("ALTER TABLE pipeline_step RESET (fillfactor)")
    op.drop_index("ix_step_name", table_name="pipeline_step")
    op.create_index(
        "ix_step_name_open",
        "pipeline_step",
        ["name"],
        postgresql_where=sa.text("status IN ('running', 'failed')"),
    )
    op.create_index("ix_step_status", "pipeline_step", ["status"], unique=False)
