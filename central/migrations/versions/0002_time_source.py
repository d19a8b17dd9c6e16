"""Where each answer's placed time comes from, and an index for re-timing.

``events.time_source`` says how ``ts_utc`` (the time the dashboard places an
answer at) was found: ``device`` (the device's synchronised clock),
``retimed`` (from a later synchronised answer of the same boot, via
``mono_ms``) or ``received`` (central's receipt time, the clock was not set).
The device's own ``ts`` is always kept as sent.

Rows stored before this revision keep their ``ts_utc`` and are marked
``device``: that is where revision 0001 placed every answer.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A server default fills the existing rows in place (SQLite's ADD COLUMN
    # needs one for NOT NULL); new rows always set the column themselves.
    op.add_column(
        "events",
        sa.Column("time_source", sa.String(16), nullable=False, server_default="device"),
    )
    op.create_index("ix_events_boot_mono", "events", ["site", "device", "boot_id", "mono_ms"])


def downgrade() -> None:
    op.drop_index("ix_events_boot_mono", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("time_source")
