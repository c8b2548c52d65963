"""Read-only views for /my, /orders, /cancel, /members, /stats and /export.

Money is summed per currency in SQL (integers) and never converted. "Now" is passed in.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from membership.removal import ENDED
from storage.models import ChatGroup, Membership, Order, Payment, Plan, PlanGroup, User
from storage.money import Money

WINDOW = timedelta(days=30)
# Orders whose payments count as revenue. Money an order did not expect (paid twice, after
# a failed attempt, a wrong amount) is an `extra` payment: never revenue, shown on its own
# line until it is refunded.
EARNING = ("paid", "refunded")
# How each kind of payment moves the money: a won dispute gives the disputed money back.
SIGN = {"charge": 1, "dispute_won": 1, "refund": -1, "dispute": -1}


def active_now(now: datetime) -> ColumnElement[bool]:
    """grants.is_active in SQL: active and not past its end (lifetime: no end)."""
    return and_(
        Membership.status == "active",
        or_(
            Membership.expires_at.is_(None),  # type: ignore[union-attr]
            Membership.expires_at > now,
        ),
    )  # type: ignore[operator]


# -- the buyer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    membership: Membership
    group: ChatGroup


async def user_accesses(session: AsyncSession, user_id: int, limit: int = 20) -> list[Access]:
    """The user's memberships: running ones first (soonest end first, lifetime last), then
    ended ones, most recently ended first."""
    ended = Membership.status.in_(ENDED)  # type: ignore[attr-defined]
    rows = (
        await session.execute(
            select(Membership, ChatGroup)
            .join(ChatGroup, ChatGroup.id == Membership.chat_group_id)
            .where(Membership.user_id == user_id)
            .order_by(
                ended,
                Membership.expires_at.is_(None),  # type: ignore[union-attr]
                Membership.expires_at,
                Membership.updated_at.desc(),  # type: ignore[attr-defined]
                Membership.id,
            )
            .limit(limit)
        )
    ).all()
    return [Access(m, g) for m, g in rows]


async def auto_renewing(session: AsyncSession, user_id: int) -> list[Access]:
    """The user's running memberships that a provider subscription renews."""
    rows = (
        await session.execute(
            select(Membership, ChatGroup)
            .join(ChatGroup, ChatGroup.id == Membership.chat_group_id)
            .where(
                Membership.user_id == user_id,
                Membership.auto_renew.is_(True),  # type: ignore[attr-defined]
                Membership.provider_subscription_id.is_not(None),  # type: ignore[union-attr]
                Membership.status.not_in(ENDED),
            )  # type: ignore[attr-defined]
            .order_by(Membership.id)
        )
    ).all()
    return [Access(m, g) for m, g in rows]


@dataclass(frozen=True)
class OrderLine:
    order_no: str
    plan: str
    price: Money
    provider: str
    status: str
    created_at: datetime


async def user_orders(
    session: AsyncSession, user_id: int, limit: int = 20
) -> tuple[list[OrderLine], int]:
    """The user's latest `limit` orders, newest first, and how many they have in all."""
    rows = (
        await session.execute(
            select(Order, Plan.title)
            .join(Plan, Plan.id == Order.plan_id)
            .where(Order.user_id == user_id)
            .order_by(Order.created_at.desc(), Order.id.desc())  # type: ignore[attr-defined,union-attr]
            .limit(limit)
        )
    ).all()
    total = (
        await session.execute(
            select(func.count()).select_from(Order).where(Order.user_id == user_id)
        )
    ).scalar_one()
    return [
        OrderLine(
            o.order_no, title, Money(o.amount_minor, o.currency), o.provider, o.status, o.created_at
        )
        for o, title in rows
    ], int(total)


# -- the owner -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MembersReport:
    members: list[tuple[User, Membership]]  # active ones, soonest end first; at most `limit`
    active: int
    lifetime: int
    renewing: int
    ended: int

    @property
    def more(self) -> int:
        return self.active - len(self.members)


async def group_members(
    session: AsyncSession, group_id: int, now: datetime, limit: int = 50
) -> MembersReport:
    in_group = Membership.chat_group_id == group_id
    rows = (
        await session.execute(
            select(User, Membership)
            .join(User, User.id == Membership.user_id)
            .where(in_group, active_now(now))
            .order_by(
                Membership.expires_at.is_(None),
                Membership.expires_at,  # type: ignore[union-attr]
                Membership.id,
            )
            .limit(limit)
        )
    ).all()
    counts = (
        await session.execute(
            select(
                func.count().filter(active_now(now)),
                func.count().filter(active_now(now), Membership.expires_at.is_(None)),  # type: ignore[union-attr]
                func.count().filter(active_now(now), Membership.auto_renew.is_(True)),  # type: ignore[attr-defined]
                func.count().filter(Membership.status.in_(ENDED)),  # type: ignore[attr-defined]
            )
            .select_from(Membership)
            .where(in_group)
        )
    ).one()
    return MembersReport([(u, m) for u, m in rows], *(int(c) for c in counts))


@dataclass
class Stats:
    groups: list[tuple[ChatGroup, int]] = field(default_factory=list)  # (group, active members)
    revenue: list[Money] = field(default_factory=list)  # net, all time, per currency
    revenue_recent: list[Money] = field(default_factory=list)  # net, last 30 days
    unexpected: list[Money] = field(default_factory=list)  # extra charges not refunded yet
    unexpected_count: int = 0  # how many extra charges still hold money
    renewals: int = 0  # renewal charges in the last 30 days
    ended: int = 0  # memberships that ended (expired or revoked) in 30 days
    active_at_start: int = 0  # memberships running 30 days ago

    @property
    def churn(self) -> float | None:
        return self.ended / self.active_at_start if self.active_at_start else None


def _net(rows: list[tuple[str, str, int]]) -> list[Money]:
    """Charges minus refunds and disputes (plus disputes won back), per currency;
    currencies with nothing left out."""
    total: dict[str, int] = defaultdict(int)
    for currency, kind, amount in rows:
        total[currency] += SIGN.get(kind, 0) * int(amount)
    return [Money(v, c) for c, v in sorted(total.items()) if v]


async def owner_stats(session: AsyncSession, owner_id: int | None, now: datetime) -> Stats:
    """Figures for the groups and plans of `owner_id` (None: every group, for admins)."""
    since = now - WINDOW
    gq = select(ChatGroup).where(ChatGroup.active).order_by(ChatGroup.id)
    pq = select(Plan.id)
    if owner_id is not None:
        gq = gq.where(ChatGroup.owner_user_id == owner_id)
        pq = pq.where(Plan.owner_user_id == owner_id)
    groups = list((await session.execute(gq)).scalars().all())
    stats = Stats()
    if not groups:
        return stats
    gids = [g.id for g in groups]
    active: dict[int, int] = dict(
        (
            await session.execute(  # type: ignore[arg-type]
                select(Membership.chat_group_id, func.count())
                .where(Membership.chat_group_id.in_(gids), active_now(now))  # type: ignore[attr-defined]
                .group_by(Membership.chat_group_id)
            )
        ).all()
    )
    stats.groups = [(g, int(active.get(g.id, 0))) for g in groups]

    earning = select(Order.id).where(
        Order.plan_id.in_(pq),  # type: ignore[attr-defined]
        Order.status.in_(EARNING),
    )  # type: ignore[attr-defined]
    own = Payment.extra.is_(False)  # type: ignore[attr-defined]
    money = (
        select(Payment.currency, Payment.kind, func.sum(Payment.amount_minor))
        .where(Payment.order_id.in_(earning), own)  # type: ignore[attr-defined]
        .group_by(Payment.currency, Payment.kind)
    )
    stats.revenue = _net([tuple(r) for r in (await session.execute(money)).all()])  # type: ignore[misc]
    stats.revenue_recent = _net(
        [
            tuple(r)
            for r in (
                await session.execute(  # type: ignore[misc]
                    money.where(Payment.at >= since)
                )
            ).all()
        ]
    )

    # A renewal is a charge on an order that was charged before: a subscription's later
    # periods are recorded as further charges of the order that started it.
    earlier = aliased(Payment)
    stats.renewals = int(
        (
            await session.execute(
                select(func.count())
                .select_from(Payment)
                .where(
                    Payment.order_id.in_(earning),
                    Payment.kind == "charge",  # type: ignore[attr-defined]
                    Payment.at >= since,
                    own,
                    exists().where(
                        earlier.order_id == Payment.order_id,
                        earlier.kind == "charge",
                        earlier.extra.is_(False),  # type: ignore[attr-defined]
                        earlier.id < Payment.id,
                    ),  # type: ignore[operator]
                )
            )
        ).scalar_one()
    )
    stats.unexpected, stats.unexpected_count = await _unexpected(session, pq)

    # Churn: of the memberships running 30 days ago, how many have ended since. end_access
    # stamps updated_at when it ends one, and an ended row is not touched again until it is
    # granted anew (which makes it active, with a new starts_at).
    in_groups = Membership.chat_group_id.in_(gids)  # type: ignore[attr-defined]
    ended_since = and_(
        Membership.status.in_(ENDED),  # type: ignore[attr-defined]
        Membership.updated_at >= since,
    )
    stats.ended = int(
        (
            await session.execute(
                select(func.count()).select_from(Membership).where(in_groups, ended_since)
            )
        ).scalar_one()
    )
    stats.active_at_start = int(
        (
            await session.execute(
                select(func.count())
                .select_from(Membership)
                .where(
                    in_groups,
                    Membership.starts_at <= since,
                    or_(Membership.expires_at.is_(None), Membership.expires_at > since),  # type: ignore[union-attr,operator]
                    or_(Membership.status == "active", ended_since),
                )
            )
        ).scalar_one()
    )
    return stats


async def _unexpected(session: AsyncSession, plans: Any) -> tuple[list[Money], int]:
    """Extra charges of these plans' orders still holding money (not refunded, or disputed
    back), per currency, and how many they are."""
    back = aliased(Payment)
    sign = case((back.kind == "dispute_won", back.amount_minor), else_=-back.amount_minor)
    reversed_ = (
        select(func.coalesce(func.sum(sign), 0))
        .where(back.provider == Payment.provider, back.reverses == Payment.provider_payment_id)
        .scalar_subquery()
    )
    left = (Payment.amount_minor + reversed_).label("left")
    rows = (
        await session.execute(
            select(Payment.currency, left)
            .join(Order, Order.id == Payment.order_id)
            .where(
                Order.plan_id.in_(plans),
                Payment.extra.is_(True),  # type: ignore[attr-defined]
                Payment.kind == "charge",
            )
        )
    ).all()
    total: dict[str, int] = defaultdict(int)
    count = 0
    for currency, amount in rows:
        if int(amount) > 0:
            total[currency] += int(amount)
            count += 1
    return [Money(v, c) for c, v in sorted(total.items())], count


# -- /export ---------------------------------------------------------------------------------

EXPORT_COLUMNS = [
    "record",
    "telegram_id",
    "username",
    "first_name",
    "status",
    "starts_at",
    "expires_at",
    "auto_renew",
    "order_no",
    "plan",
    "amount",
    "currency",
    "provider",
    "created_at",
    "paid_at",
]


def _iso(dt: datetime | None) -> str:
    return dt.isoformat() if dt is not None else ""


def _amount(m: Money) -> str:
    return m.format().split(" ", 1)[0]  # "4.99" / "250": the currency has its own column


@dataclass(frozen=True)
class Export:
    data: bytes
    members: int
    orders: int


async def export_group(session: AsyncSession, group_id: int) -> Export:
    """One CSV (UTF-8 with a BOM, so spreadsheets read non-Latin titles): a `member` row per
    membership of the group, whatever its status, then an `order` row per order of a plan
    that grants the group. Times are ISO 8601 UTC; a blank expires_at is lifetime."""
    out = io.StringIO()
    w = csv.DictWriter(out, EXPORT_COLUMNS, lineterminator="\r\n")
    w.writeheader()
    members = (
        await session.execute(
            select(User, Membership)
            .join(User, User.id == Membership.user_id)
            .where(Membership.chat_group_id == group_id)
            .order_by(Membership.id)
        )
    ).all()
    for u, m in members:
        w.writerow(
            {
                "record": "member",
                "telegram_id": u.platform_user_id,
                "username": u.username or "",
                "first_name": u.first_name or "",
                "status": m.status,
                "starts_at": _iso(m.starts_at),
                "expires_at": _iso(m.expires_at),
                "auto_renew": int(m.auto_renew),
            }
        )
    orders = (
        await session.execute(
            select(Order, User, Plan.title)
            .join(User, User.id == Order.user_id)
            .join(Plan, Plan.id == Order.plan_id)
            .where(
                Order.plan_id.in_(  # type: ignore[attr-defined]
                    select(PlanGroup.plan_id).where(PlanGroup.chat_group_id == group_id)
                )
            )
            .order_by(Order.created_at, Order.id)
        )
    ).all()
    for o, u, title in orders:
        w.writerow(
            {
                "record": "order",
                "telegram_id": u.platform_user_id,
                "username": u.username or "",
                "first_name": u.first_name or "",
                "status": o.status,
                "order_no": o.order_no,
                "plan": title,
                "amount": _amount(Money(o.amount_minor, o.currency)),
                "currency": o.currency,
                "provider": o.provider,
                "created_at": _iso(o.created_at),
                "paid_at": _iso(o.paid_at),
            }
        )
    return Export(out.getvalue().encode("utf-8-sig"), len(members), len(orders))
