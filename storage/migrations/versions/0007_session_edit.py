"""session edit: the marks an operator set by hand on a jump's recording (issue 15)

``session_edit`` holds one row per jump session whose exit, opening and landing an operator
moved (``skyreel edit``, ``POST /api/sessions/{key}/edit``): the marks in seconds on the
recording's timeline, who set them and when. The ``phases`` step builds the edit from them
instead of detecting.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_edit",
        sa.Column(
            "session_key", sa.String(128), sa.ForeignKey("jump_session.key"), primary_key=True
        ),
        sa.Column("marks", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("set_by", sa.String(200), nullable=False),
        sa.Column(
            "set_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("command_id", sa.String(64), server_default="", nullable=False),
    )


def downgrade() -> None:
    op.drop_table("session_edit")
