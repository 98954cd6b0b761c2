"""deliveries (issue 16): the passenger's email on the booking, and one row per email sent

``jump_session.email`` (and ``qr_scan.email`` / ``qr_scan.email_warning``, what the ticket
said) is where the `deliver` step sends the passenger link; an operator sets it on assign.
``delivery`` makes the email exactly-once: its ``idempotency_key`` (one per booking and
deliverable set, or ``resend-<n>``) is claimed before anything is sent, and a key already
``sent`` never sends again (agents/jobs/deliver_step.py).

Revision ID: 0011
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jump_session", sa.Column("email", sa.String(254), nullable=True))
    op.add_column("qr_scan", sa.Column("email", sa.String(254), nullable=True))
    op.add_column(
        "qr_scan", sa.Column("email_warning", sa.Text(), server_default="", nullable=False)
    )
    op.create_table(
        "delivery",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("booking_id", sa.String(64), nullable=False),
        sa.Column("deliverable_set", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("recipient", sa.String(254), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), server_default="", nullable=False),
        sa.Column("message_id", sa.String(300), nullable=False),
        sa.Column("link_id", sa.BigInteger(), nullable=True),
        sa.Column("outbox_file", sa.Text(), nullable=True),
        sa.Column("session_key", sa.String(128), nullable=True),
        sa.Column("requested_by", sa.String(200), server_default="", nullable=False),
        sa.Column("request_id", sa.String(64), server_default="", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_delivery_booking", "delivery", ["booking_id"])
    op.create_index("ix_delivery_created", "delivery", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_delivery_created", table_name="delivery")
    op.drop_index("ix_delivery_booking", table_name="delivery")
    op.drop_table("delivery")
    op.drop_column("qr_scan", "email_warning")
    op.drop_column("qr_scan", "email")
    op.drop_column("jump_session", "email")
