"""indexes for copy landings, execution and session lists

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_step_name_open",
        "pipeline_step",
        ["name"],
        postgresql_where=sa.text("status IN ('running', 'failed')"),
    )
    op.create_index("ix_execution_status_id", "pipeline_execution", ["status", "id"])
    op.create_index("ix_session_status_created", "jump_session", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_session_status_created", table_name="jump_session")
    op.drop_index("ix_execution_status_id", table_name="pipeline_execution")
    op.drop_index("ix_step_name_open", table_name="pipeline_step")
