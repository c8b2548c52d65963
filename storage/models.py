"""The tables of DESIGN.md. Table and column names are part of the contract.

Money is integer minor units plus an ISO 4217 currency (or XTR for Telegram Stars).
Every datetime is timezone-aware UTC (UTCDateTime).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    LargeBinary,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime


def table(model: type[SQLModel]) -> Table:
    """A table model's Core table, for the Core statements of the hot paths (`table(X).c.col`).

    SQLModel's metaclass sets `__table__` on every `table=True` class; its type stubs do not
    declare it, hence the one ignore.
    """
    t: Table = model.__table__  # type: ignore[attr-defined]
    return t


class _Stored(Protocol):
    @property
    def id(self) -> int | None: ...


def stored_id(row: _Stored) -> int:
    """The primary key of a row read from or flushed to the database.

    SQLModel types `id` as `int | None` because a new row gets its id only from the database;
    a row the caller holds after a read or flush always has one.
    """
    assert row.id is not None, "the row has not been flushed yet"
    return row.id


def _dt(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


class User(SQLModel, table=True):
    __tablename__ = "user"
    __table_args__ = (UniqueConstraint("platform", "platform_user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)  # telegram | wechat
    platform_user_id: str = Field(max_length=64)
    username: str | None = Field(default=None, max_length=64)
    first_name: str | None = Field(default=None, max_length=128)
    language: str | None = Field(default=None, max_length=8)
    # As an owner: on a refund or dispute, "revoke" access at once or "keep" it to period end.
    refund_policy: str = Field(default="revoke", max_length=8)
    created_at: datetime = _dt()


class ChatGroup(SQLModel, table=True):
    __tablename__ = "chat_group"
    __table_args__ = (UniqueConstraint("platform", "chat_id"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)
    chat_id: str = Field(max_length=64)
    title: str = Field(max_length=255)
    owner_user_id: int = Field(foreign_key="user.id", index=True)
    # join_request (default): a link that creates join requests, approved only for the buyer;
    # single_use: member_limit=1 with a short expiry; add_member: WeChat adds to the room.
    invite_mode: str = Field(default="join_request", max_length=16)
    # group (a Telegram group or supergroup, a WeChat room) | channel (a Telegram channel:
    # registered from the owner's private chat, and the only kind that takes Star links).
    chat_type: str = Field(
        default="group", max_length=16, sa_column_kwargs={"server_default": "group"}
    )
    # What the join guard does with a member who appears without access: "remove" them (a
    # Telegram group's rule), or only "report" them to the owner (a WeChat room's default:
    # WeChat has no join requests, and owners add friends by hand). /guard changes it.
    guard: str = Field(
        default="remove", max_length=8, sa_column_kwargs={"server_default": "remove"}
    )
    active: bool = True
    created_at: datetime = _dt()


class StarLink(SQLModel, table=True):
    """A Telegram Star subscription invite link the bot made for a channel (/starlink).
    Telegram collects the Stars and keeps them: no order or payment row stands behind it."""

    __tablename__ = "star_link"

    id: int | None = Field(default=None, primary_key=True)
    chat_group_id: int = Field(foreign_key="chat_group.id", index=True)
    link: str = Field(max_length=512, unique=True)
    name: str | None = Field(default=None, max_length=32)
    price_stars: int  # per 30 days
    created_by: int = Field(foreign_key="user.id")
    created_at: datetime = _dt()


class Whitelist(SQLModel, table=True):
    """Members the owner lets stay without a paid membership (admins, friends, staff)."""

    __tablename__ = "whitelist"
    __table_args__ = (UniqueConstraint("chat_group_id", "platform_user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    chat_group_id: int = Field(foreign_key="chat_group.id")
    platform_user_id: str = Field(max_length=64)
    created_at: datetime = _dt()


class Plan(SQLModel, table=True):
    __tablename__ = "plan"

    id: int | None = Field(default=None, primary_key=True)
    owner_user_id: int = Field(foreign_key="user.id", index=True)
    title: str = Field(max_length=128)
    duration_days: int | None = None  # None = lifetime
    recurring: bool = False
    trial_days: int = 0
    active: bool = True
    created_at: datetime = _dt()


class PlanGroup(SQLModel, table=True):
    """A plan grants one or more groups (a bundle)."""

    __tablename__ = "plan_group"
    __table_args__ = (UniqueConstraint("plan_id", "chat_group_id"),)

    id: int | None = Field(default=None, primary_key=True)
    plan_id: int = Field(foreign_key="plan.id", index=True)
    chat_group_id: int = Field(foreign_key="chat_group.id", index=True)


class PlanPrice(SQLModel, table=True):
    __tablename__ = "plan_price"
    __table_args__ = (UniqueConstraint("plan_id", "currency"),)

    id: int | None = Field(default=None, primary_key=True)
    plan_id: int = Field(foreign_key="plan.id", index=True)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)


class Order(SQLModel, table=True):
    __tablename__ = "orders"  # ORDER is reserved in SQL
    __table_args__ = (Index("ix_orders_status_created", "status", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    order_no: str = Field(max_length=32, unique=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    # plan: buys plan_id; topup: buys topup_id (wallet balance). Exactly one of the two is set.
    kind: str = Field(default="plan", max_length=8, sa_column_kwargs={"server_default": "plan"})
    plan_id: int | None = Field(default=None, foreign_key="plan.id", index=True)
    topup_id: int | None = Field(default=None, foreign_key="topup_product.id", index=True)
    # "wallet" for an order paid wholly from the wallet (no provider is asked).
    provider: str = Field(max_length=16)
    # What the provider charges: the price less the wallet part (0 for a wallet-only order).
    # Per order, provider charges - refunds = amount_minor when paid (docs/ledger.md).
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    # The wallet part of the price (issue 11): balance (minor units of `currency`) and
    # points (their count, and their value in minor units). Price = amount_minor +
    # wallet_minor + points_minor. Held at checkout (wallet_hold), committed when paid.
    wallet_minor: int = Field(
        default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"}
    )
    points_used: int = Field(
        default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"}
    )
    points_minor: int = Field(
        default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"}
    )
    # pending -> paid | expired | cancelled | failed; paid -> refunded
    status: str = Field(default="pending", max_length=16)
    provider_ref: str | None = Field(default=None, max_length=255, index=True)
    checkout_url: str | None = Field(default=None, max_length=2048)
    created_at: datetime = _dt()
    paid_at: datetime | None = _dt(nullable=True)
    expires_at: datetime | None = _dt(nullable=True)
    # When reconciliation last claimed this pending order to ask its provider: a lease, so
    # replicas do not ask twice, and the pace at which one order is asked again.
    reconciled_at: datetime | None = _dt(nullable=True)


class Payment(SQLModel, table=True):
    __tablename__ = "payment"
    __table_args__ = (UniqueConstraint("provider", "provider_payment_id"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    provider: str = Field(max_length=16)
    provider_payment_id: str = Field(max_length=255)
    kind: str = Field(max_length=16)  # charge | refund | dispute | dispute_won
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    at: datetime = _dt()
    # Money the order did not expect (paid twice, paid after a failed attempt, a wrong
    # amount) and the reversals of such money: kept out of plan revenue, shown to the owner
    # until it is refunded.
    extra: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # For a refund or dispute (or a won dispute): the provider id of the payment it reverses.
    reverses: str | None = Field(default=None, max_length=255, index=True)
    # When the owner asked for this (extra) charge to be refunded: one request per charge.
    refund_requested_at: datetime | None = _dt(nullable=True)


class Membership(SQLModel, table=True):
    __tablename__ = "membership"
    # One row per (user, group): buying again extends it rather than stacking rows.
    __table_args__ = (
        UniqueConstraint("user_id", "chat_group_id"),
        Index("ix_membership_status_expires", "status", "expires_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    chat_group_id: int = Field(foreign_key="chat_group.id", index=True)
    plan_id: int | None = Field(default=None, foreign_key="plan.id")
    # active | expired | revoked | pending_approval
    status: str = Field(default="active", max_length=20)
    starts_at: datetime = _dt()
    expires_at: datetime | None = _dt(nullable=True)  # None = lifetime
    provider_subscription_id: str | None = Field(default=None, max_length=255, index=True)
    auto_renew: bool = False
    reminded_at: datetime | None = _dt(nullable=True)
    updated_at: datetime = _dt()
    # Set when the access came through a Telegram Star subscription link (the link's URL):
    # Telegram bills it, renews it and removes the member when it lapses, so our lapse sweeps
    # and the join guard leave it alone; chat_member updates keep expires_at in step.
    star_link: str | None = Field(default=None, max_length=512)
    # The end of the period the member paid Telegram for through a Star subscription link
    # (chat_member until_date), kept while paid access of ours is in charge (star_link None):
    # a renewal at Telegram still extends the access, and a refund of our plan cuts the
    # access back to this end instead of removing someone Telegram was paid to let in.
    star_until: datetime | None = _dt(nullable=True)


class Invite(SQLModel, table=True):
    __tablename__ = "invite"

    id: int | None = Field(default=None, primary_key=True)
    membership_id: int = Field(foreign_key="membership.id", index=True)
    link: str = Field(max_length=512, index=True)
    expires_at: datetime | None = _dt(nullable=True)
    used_by: str | None = Field(default=None, max_length=64)
    revoked: bool = False
    created_at: datetime = _dt()


class WebhookEvent(SQLModel, table=True):
    __tablename__ = "webhook_event"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=16)
    event_id: str = Field(max_length=255)
    event_type: str | None = Field(default=None, max_length=64)
    received_at: datetime = _dt()
    processed_at: datetime | None = _dt(nullable=True)
    error: str | None = Field(default=None, max_length=1000)
    # The verified body exactly as it arrived (bytes: it may not even be UTF-8), so an event
    # mishandled by a bug can be replayed after the fix; dropped after webhooks.keep_raw_days.
    raw_body: bytes | None = Field(default=None, sa_type=LargeBinary, nullable=True)


class Outbox(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    platform: str = Field(max_length=16)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending | done | failed
    attempts: int = 0
    next_attempt_at: datetime = _dt()
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = _dt()


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    actor: str = Field(max_length=64)  # "user:<id>", "system", "provider:stripe"
    action: str = Field(max_length=64)
    target: str = Field(max_length=128)
    detail: str | None = Field(default=None, max_length=1000)
    at: datetime = _dt(index=True)


class TelegramUpdate(SQLModel, table=True):
    """A Telegram update applied: written in the handler's own transaction, so an update
    Telegram delivers again (a lost webhook answer, a restart before getUpdates confirmed
    it, two replicas) finds its row and changes nothing. Rows older than Telegram's
    redelivery window are pruned."""

    __tablename__ = "telegram_update"
    __table_args__ = (UniqueConstraint("bot_id", "update_id"),)

    id: int | None = Field(default=None, primary_key=True)
    bot_id: int = Field(sa_type=BigInteger)
    update_id: int = Field(sa_type=BigInteger)
    applied_at: datetime = _dt(index=True)


class Broadcast(SQLModel, table=True):
    """An owner's /broadcast: the text, how many members it was queued for, and how their
    messages ended. The counts move in the same transaction as each recipient's outcome, so
    the one transaction that brings them up to `recipients` sets `finished_at` and queues
    the owner's report: one report per broadcast, from what is stored."""

    __tablename__ = "broadcast"

    id: int | None = Field(default=None, primary_key=True)
    # Who sent it and gets the report: the group's owner, or a configured admin id.
    owner_user_id: int = Field(foreign_key="user.id", index=True)
    chat_group_id: int = Field(foreign_key="chat_group.id", index=True)
    text: str = Field(sa_type=Text)  # as the owner wrote it; sent as plain text
    recipients: int
    delivered: int = 0
    blocked: int = 0  # the user blocked the bot or deleted their account (403)
    failed: int = 0  # any other refusal that retrying cannot fix
    created_at: datetime = _dt()
    finished_at: datetime | None = _dt(nullable=True)


class BroadcastRecipient(SQLModel, table=True):
    """One member a broadcast goes to, fixed when it is queued: one row per user (a member
    through two plans is one recipient), and the outcome of their message."""

    __tablename__ = "broadcast_recipient"
    __table_args__ = (UniqueConstraint("broadcast_id", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    broadcast_id: int = Field(foreign_key="broadcast.id")
    user_id: int = Field(foreign_key="user.id", index=True)
    status: str = Field(default="pending", max_length=16)  # pending | delivered | blocked | failed
    error: str | None = Field(default=None, max_length=1000)
    done_at: datetime | None = _dt(nullable=True)


class AccountLink(SQLModel, table=True):
    """One person's Telegram user and WeChat user, bound by a one-time code (/link): a plan
    that bundles a Telegram group and a WeChat room grants each to the account on its own
    platform. One link per account on either side."""

    __tablename__ = "account_link"

    id: int | None = Field(default=None, primary_key=True)
    telegram_user_id: int = Field(foreign_key="user.id", unique=True)
    wechat_user_id: int = Field(foreign_key="user.id", unique=True)
    created_at: datetime = _dt()


class LinkCode(SQLModel, table=True):
    """A one-time code from /link on one platform, to be sent to the bot on the other."""

    __tablename__ = "link_code"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=16, unique=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    created_at: datetime = _dt()
    expires_at: datetime = _dt()
    used_at: datetime | None = _dt(nullable=True)


class WechatMessage(SQLModel, table=True):
    """A WeChat message the bot applied (the puppet's message id), written in the handler's
    own transaction: a message the puppet delivers again after a reconnect changes nothing.
    The WeChat counterpart of telegram_update."""

    __tablename__ = "wechat_message"

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=128, unique=True)
    applied_at: datetime = _dt(index=True)


class WechatMenu(SQLModel, table=True):
    """The numbered choices the bot last listed to a WeChat user (rooms, plans, payment
    methods): WeChat has no buttons, so a reply of "2" is read against this. Stored, so a
    worker restart between the list and the reply loses nothing."""

    __tablename__ = "wechat_menu"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", unique=True)
    choices: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = _dt()


class TopupProduct(SQLModel, table=True):
    """An owner's top-up (/addtopup 100CNY 10CNY): pay `amount_minor`, receive
    amount_minor + bonus_minor in wallet balance of `currency`."""

    __tablename__ = "topup_product"

    id: int | None = Field(default=None, primary_key=True)
    owner_user_id: int = Field(foreign_key="user.id", index=True)
    amount_minor: int = Field(sa_type=BigInteger)
    bonus_minor: int = Field(default=0, sa_type=BigInteger)
    currency: str = Field(max_length=3)
    active: bool = True
    created_at: datetime = _dt()


class WalletAccount(SQLModel, table=True):
    """A user's balance (kind "balance", minor units of `currency`) or points (kind
    "points", currency "PTS"). `balance` is a cache of the sum of the account's entries,
    moved in the same transaction as each entry, and can never go negative (the CHECK, and
    every debit is a compare-and-set `balance >= amount`)."""

    __tablename__ = "wallet_account"
    __table_args__ = (
        UniqueConstraint("user_id", "kind", "currency"),
        CheckConstraint("balance >= 0", name="ck_wallet_account_balance_nonneg"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    kind: str = Field(max_length=8)  # balance | points
    currency: str = Field(max_length=3)  # ISO 4217 for balance; "PTS" for points
    balance: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = _dt()


class WalletEntry(SQLModel, table=True):
    """Append-only: every change of a wallet account, signed. An account's balance is the sum
    of its entries. `idempotency_key` is unique: a credit or debit done twice is done once."""

    __tablename__ = "wallet_entry"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="wallet_account.id", index=True)
    amount: int = Field(sa_type=BigInteger)  # signed
    # topup | bonus | hold | release | refund | earn | reverse | adjust
    reason: str = Field(max_length=16)
    order_id: int | None = Field(default=None, foreign_key="orders.id", index=True)
    idempotency_key: str = Field(max_length=128, unique=True)
    at: datetime = _dt()


class WalletHold(SQLModel, table=True):
    """The wallet part of an order, per account: taken from the balance at checkout (a
    `hold` entry), `committed` when the provider part is paid, `released` (a `release`
    entry gives it back) when the order expires, fails or is cancelled, `returned` by a
    refund."""

    __tablename__ = "wallet_hold"
    __table_args__ = (UniqueConstraint("order_id", "account_id"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    account_id: int = Field(foreign_key="wallet_account.id")
    amount: int = Field(sa_type=BigInteger)  # positive: what was taken
    status: str = Field(default="held", max_length=16)  # held | committed | released | returned
    created_at: datetime = _dt()
    settled_at: datetime | None = _dt(nullable=True)


class WalletPin(SQLModel, table=True):
    """A user's optional payment PIN (/pin): a password hash, and the lock after wrong tries."""

    __tablename__ = "wallet_pin"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", unique=True)
    pin_hash: str = Field(max_length=255)
    failed_attempts: int = 0
    locked_until: datetime | None = _dt(nullable=True)
    updated_at: datetime = _dt()
