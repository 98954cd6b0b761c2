"""every jump reaches exactly its passenger: file identity with folder, warnings, card safety

- ``imported_file``'s natural key takes the path (folder included) instead of the bare name:
  ``100GOPRO/GX010001.MP4`` and ``101GOPRO/GX010001.MP4`` of one size and mtime are two files.
  The old key was coarser, so existing rows are unique under the new one.
- ``imported_file.probe_error``: why a clip could not be read (it fails only itself).
- ``card``: free and total bytes from the listing, names the detector skipped, clock warning.
- ``jump_session``: warnings shown to operators, the reason for review, the stable output name
  and the capture time of its first clip.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("uq_imported_file_natural", "imported_file", type_="unique")
    op.create_unique_constraint(
        "uq_imported_file_natural", "imported_file", ["card_id", "path", "size", "mtime_ms"]
    )
    op.add_column(
        "imported_file",
        sa.Column("probe_error", sa.Text(), server_default="", nullable=False),
    )
    op.add_column("card", sa.Column("free_bytes", sa.BigInteger(), nullable=True))
    op.add_column("card", sa.Column("capacity_bytes", sa.BigInteger(), nullable=True))
    op.add_column(
        "card",
        sa.Column(
            "skipped",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("card", sa.Column("clock_warning", sa.Text(), server_default="", nullable=False))
    op.add_column(
        "jump_session",
        sa.Column(
            "warnings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(
        "jump_session",
        sa.Column("review_reason", sa.Text(), server_default="", nullable=False),
    )
    op.add_column("jump_session", sa.Column("output_name", sa.Text(), nullable=True))
    op.add_column(
        "jump_session", sa.Column("capture_start", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    for column in ("capture_start", "output_name", "review_reason", "warnings"):
        op.drop_column("jump_session", column)
    for column in ("clock_warning", "skipped", "capacity_bytes", "free_bytes"):
        op.drop_column("card", column)
    op.drop_column("imported_file", "probe_error")
    op.drop_constraint("uq_imported_file_natural", "imported_file", type_="unique")
    op.create_unique_constraint(
        "uq_imported_file_natural", "imported_file", ["card_id", "name", "size", "mtime_ms"]
    )
