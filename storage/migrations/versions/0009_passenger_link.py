"""passenger links: one row per link issued to a booking's passenger page, so it can be revoked

``passenger_link`` holds what the signed token names (the booking) and what the token cannot say
by itself: whether an operator revoked it (``revoked_at``, ``revoked_by``). The expiry is in the
token too (signed); the row keeps it so the dashboard and the CLI can show it.

Revision ID: 0009
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "passenger_link",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("booking_id", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(200), server_default="", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(200), nullable=True),
    )
    op.create_index("ix_passenger_link_booking", "passenger_link", ["booking_id"])


def downgrade() -> None:
    op.drop_index("ix_passenger_link_booking", table_name="passenger_link")
    op.drop_table("passenger_link")
