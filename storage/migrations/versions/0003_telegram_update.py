"""telegram_update: the Telegram updates already applied (exactly-once at the Telegram edge)

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telegram_update",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column("applied_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("bot_id", "update_id"),
    )
    with op.batch_alter_table("telegram_update", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_telegram_update_applied_at"), ["applied_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("telegram_update", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_telegram_update_applied_at"))
    op.drop_table("telegram_update")
