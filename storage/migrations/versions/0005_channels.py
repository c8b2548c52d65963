"""channels: the kind of chat a group is, Star subscription links and the access they give

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chat_group", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "chat_type",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="group",
            )
        )
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("star_link", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True)
        )
    op.create_table(
        "star_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chat_group_id", sa.Integer(), nullable=False),
        sa.Column("link", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("price_stars", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["chat_group_id"], ["chat_group.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("link"),
    )
    with op.batch_alter_table("star_link", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_star_link_chat_group_id"), ["chat_group_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("star_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_star_link_chat_group_id"))
    op.drop_table("star_link")
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.drop_column("star_link")
    with op.batch_alter_table("chat_group", schema=None) as batch_op:
        batch_op.drop_column("chat_type")
