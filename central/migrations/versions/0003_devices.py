"""Device health: one row per device, from its retained status and last will.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status_ts", sa.String(32), nullable=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("backlog", sa.BigInteger, nullable=True),
        sa.Column("oldest_pending_age_s", sa.Float, nullable=True),
        sa.Column("clock_synced", sa.Boolean, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("config_error", sa.Text, nullable=True),
        sa.Column("health", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("devices")
