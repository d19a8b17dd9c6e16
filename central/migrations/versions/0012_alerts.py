"""Alerts: raised once per unique key, their acknowledgements, kiosk conditions, and deliveries to send.

See docs/central.md, "Alerts". ``alerts.key`` is unique, so several collectors
raise an alert once; ``alert_conditions`` keeps since when a kiosk's condition
has held (shared by every collector); ``alert_deliveries`` is the durable queue
the alert worker sends from (MQTT, webhook, e-mail).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("device", sa.String(64), nullable=True),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("late", sa.Boolean, nullable=False),
        sa.Column("answers", sa.Integer, nullable=True),
        sa.Column("unhappy", sa.Integer, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_by", sa.String(64), nullable=True),
        sa.UniqueConstraint("key", name="uq_alerts_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_alerts_scope", "alerts", ["kind", "site", "device", "until"])
    op.create_index("ix_alerts_raised_at", "alerts", ["raised_at"])
    op.create_table(
        "alert_acks",
        sa.Column("ack_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.BigInteger, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_alert_acks_alert_id", "alert_acks", ["alert_id"])
    op.create_table(
        "alert_conditions",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("delivery_id", _ID, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.BigInteger, nullable=False),
        sa.Column("ack_id", sa.BigInteger, nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_alert_deliveries_due", "alert_deliveries", ["state", "next_at"])


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_table("alert_conditions")
    op.drop_table("alert_acks")
    op.drop_table("alerts")
