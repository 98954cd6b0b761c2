"""retention and deletion (issue 16, item 5): the purge record, and what a purge leaves behind

``purge_record`` says every purge: which booking, why (retention-media, retention-personal,
request), who asked, when, what it did (counts) and what it could not do (errors). A purged
session keeps its row (``media_purged_at``: its files are gone; ``personal_purged_at``: its name
is gone); an imported file keeps its ledger row and identity (``purged_at``: the share copy is
gone), so the same card inserted again copies nothing.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "purge_record",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("booking_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("requested_by", sa.String(200), server_default="", nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("what", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("errors", JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
    )
    op.create_index("ix_purge_record_booking", "purge_record", ["booking_id", "at"])
    op.add_column("jump_session", sa.Column("media_purged_at", sa.DateTime(timezone=True)))
    op.add_column("jump_session", sa.Column("personal_purged_at", sa.DateTime(timezone=True)))
    op.add_column("imported_file", sa.Column("purged_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("imported_file", "purged_at")
    op.drop_column("jump_session", "personal_purged_at")
    op.drop_column("jump_session", "media_purged_at")
    op.drop_index("ix_purge_record_booking", table_name="purge_record")
    op.drop_table("purge_record")
