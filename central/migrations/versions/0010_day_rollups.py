"""Day rollups: the dashboard's numbers without rescanning every answer (docs/central.md, "Rollups").

Per desk, local day (in the site's time zone), scale and flagged-or-not: the
answers per rating, and per local hour the answers and the sum of (rating - 1);
per desk, local day and flagged-or-not: the answers per reason; per site: the
zone its rows were made in. Created empty: central fills them from ``events`` at
start (a migration does not know the sites' zones) and keeps them as answers arrive.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "day_rollups",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("scale", sa.SmallInteger, primary_key=True),
        sa.Column("flagged", sa.Boolean, primary_key=True),
        *[sa.Column(f"r{r}", sa.BigInteger, nullable=False, server_default="0") for r in range(1, 6)],
        *[sa.Column(f"h{h:02d}", sa.BigInteger, nullable=False, server_default="0") for h in range(24)],
        *[sa.Column(f"s{h:02d}", sa.BigInteger, nullable=False, server_default="0") for h in range(24)],
    )
    op.create_index("ix_day_rollups_day", "day_rollups", ["day"])
    op.create_table(
        "reason_rollups",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("flagged", sa.Boolean, primary_key=True),
        sa.Column("reason", sa.String(64), primary_key=True),
        sa.Column("answers", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_reason_rollups_day", "reason_rollups", ["day"])
    op.create_table(
        "rollup_zones",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("timezone", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rollup_zones")
    op.drop_table("reason_rollups")
    op.drop_table("day_rollups")
