"""An index on events.ts_utc: the dashboard's date-range queries across all sites.

(Queries for one site or desk use ix_events_site_device_ts.)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_ts_utc", "events", ["ts_utc"])


def downgrade() -> None:
    op.drop_index("ix_events_ts_utc", table_name="events")
