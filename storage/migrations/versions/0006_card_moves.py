"""card moves: the station a card was at before it moved to another one, and when

A card taken out of one station's reader and put into another's moves with the files the new
station lists; ``card.previous_detector_id`` and ``card.moved_at`` keep the last move visible
(red-team D6: a station could take over another's card without a trace).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("card", sa.Column("previous_detector_id", sa.String(length=64), nullable=True))
    op.add_column("card", sa.Column("moved_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("card", "moved_at")
    op.drop_column("card", "previous_detector_id")
