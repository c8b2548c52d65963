"""The wallet (issue 11): topup_product, wallet_account (balance never negative), the
append-only wallet_entry, wallet_hold (an order's wallet part), wallet_pin; orders gain kind,
topup_id and the wallet parts of their price, and plan_id becomes optional (a top-up order
buys no plan)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString
_DT = storage.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "topup_product",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_user_id", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("bonus_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", _S(length=3), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _DT(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_topup_product_owner_user_id", "topup_product", ["owner_user_id"], unique=False
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", _S(length=8), server_default="plan", nullable=False))
        batch_op.add_column(sa.Column("topup_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("wallet_minor", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("points_used", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("points_minor", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.alter_column("plan_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_index("ix_orders_topup_id", ["topup_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_orders_topup_id_topup_product", "topup_product", ["topup_id"], ["id"]
        )
    op.create_table(
        "wallet_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", _S(length=8), nullable=False),
        sa.Column("currency", _S(length=3), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _DT(timezone=True), nullable=False),
        sa.CheckConstraint("balance >= 0", name="ck_wallet_account_balance_nonneg"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "kind", "currency"),
    )
    op.create_index("ix_wallet_account_user_id", "wallet_account", ["user_id"], unique=False)
    op.create_table(
        "wallet_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", _S(length=16), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", _S(length=128), nullable=False),
        sa.Column("at", _DT(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["wallet_account.id"]),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_wallet_entry_account_id", "wallet_entry", ["account_id"], unique=False)
    op.create_index("ix_wallet_entry_order_id", "wallet_entry", ["order_id"], unique=False)
    op.create_table(
        "wallet_hold",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", _S(length=16), nullable=False),
        sa.Column("created_at", _DT(timezone=True), nullable=False),
        sa.Column("settled_at", _DT(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["wallet_account.id"]),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "account_id"),
    )
    op.create_index("ix_wallet_hold_order_id", "wallet_hold", ["order_id"], unique=False)
    op.create_table(
        "wallet_pin",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("pin_hash", _S(length=255), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", _DT(timezone=True), nullable=True),
        sa.Column("updated_at", _DT(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id"),
    )


def downgrade() -> None:
    op.drop_table("wallet_pin")
    op.drop_index("ix_wallet_hold_order_id", table_name="wallet_hold")
    op.drop_table("wallet_hold")
    op.drop_index("ix_wallet_entry_order_id", table_name="wallet_entry")
    op.drop_index("ix_wallet_entry_account_id", table_name="wallet_entry")
    op.drop_table("wallet_entry")
    op.drop_index("ix_wallet_account_user_id", table_name="wallet_account")
    op.drop_table("wallet_account")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_constraint("fk_orders_topup_id_topup_product", type_="foreignkey")
        batch_op.drop_index("ix_orders_topup_id")
        batch_op.alter_column("plan_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("points_minor")
        batch_op.drop_column("points_used")
        batch_op.drop_column("wallet_minor")
        batch_op.drop_column("topup_id")
        batch_op.drop_column("kind")
    op.drop_index("ix_topup_product_owner_user_id", table_name="topup_product")
    op.drop_table("topup_product")
