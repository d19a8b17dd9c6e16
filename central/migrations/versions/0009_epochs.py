"""Per (device, epoch): how many answers are stored and the highest seq, so gaps need no full scan.

``seq`` is gap-free from 1 per (device, epoch): an epoch has a hole exactly
when it holds fewer answers than its highest seq. The fleet view looks for the
holes' ranges only in such epochs (docs/central.md, "Gaps").

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "epochs",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("epoch", sa.String(36), primary_key=True),
        sa.Column("answers", sa.BigInteger, nullable=False),
        sa.Column("max_seq", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO epochs (site, device, epoch, answers, max_seq)"
               " SELECT site, device, epoch, count(*), max(seq) FROM events GROUP BY site, device, epoch")


def downgrade() -> None:
    op.drop_table("epochs")
