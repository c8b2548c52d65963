"""Read-only views for /my, /orders, /cancel, /members, /stats and /export.

Money is summed per currency in SQL (integers) and never converted. "Now" is passed in.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from membership.links import linked_user_id
from membership.removal import ENDED
from storage.models import (
    ChatGroup,
    Membership,
    Order,
    Payment,
    Plan,
    PlanGroup,
    TopupProduct,
    User,
    WalletAccount,
    WalletHold,
    stored_id,
)
from storage.money import Money

WINDOW = timedelta(days=30)
# Orders whose payments count as revenue. Money an order did not expect (paid twice, after
# a failed attempt, a wrong amount) is an `extra` payment: never revenue, shown on its own
# line until it is refunded.
EARNING = ("paid", "refunded")
# How each kind of payment moves the money: a won dispute gives the disputed money back.
SIGN = {"charge": 1, "dispute_won": 1, "refund": -1, "dispute": -1}
# The provider column of an /export member row whose access is a Telegram Star subscription.
STAR_PROVIDER = "telegram_star_subscription"


def active_now(now: datetime) -> ColumnElement[bool]:
    """grants.is_active in SQL: active and not past its end (lifetime: no end)."""
    return and_(
        col(Membership.status) == "active",
        or_(
            col(Membership.expires_at).is_(None),
            col(Membership.expires_at) > now,
        ),
    )


# -- the buyer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    membership: Membership
    group: ChatGroup


async def user_accesses(session: AsyncSession, user_id: int, limit: int = 20) -> list[Access]:
    """The user's memberships: running ones first (soonest end first, lifetime last), then
    ended ones, most recently ended first."""
    ended = col(Membership.status).in_(ENDED)
    rows = (
        await session.execute(
            select(Membership, ChatGroup)
            .join(ChatGroup, col(ChatGroup.id) == col(Membership.chat_group_id))
            .where(col(Membership.user_id) == user_id)
            .order_by(
                ended,
                col(Membership.expires_at).is_(None),
                col(Membership.expires_at),
                col(Membership.updated_at).desc(),
                col(Membership.id),
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
            .join(ChatGroup, col(ChatGroup.id) == col(Membership.chat_group_id))
            .where(
                col(Membership.user_id) == user_id,
                col(Membership.auto_renew).is_(True),
                col(Membership.provider_subscription_id).is_not(None),
                col(Membership.status).not_in(ENDED),
            )
            .order_by(col(Membership.id))
        )
    ).all()
    return [Access(m, g) for m, g in rows]


@dataclass(frozen=True)
class OrderLine:
    order_no: str
    plan: str
    price: Money  # the whole price: provider part + balance + points' value
    provider: str
    status: str
    created_at: datetime
    # How the wallet paid (issue 11): balance (minor units), points and their value.
    wallet_minor: int = 0
    points_used: int = 0
    points_minor: int = 0
    # A top-up (kind "topup") buys wallet balance: `plan` is "" and `bonus` what it adds.
    kind: str = "plan"
    bonus: Money | None = None

    @property
    def provider_part(self) -> Money:
        return Money(
            self.price.amount_minor - self.wallet_minor - self.points_minor, self.price.currency
        )


async def user_orders(
    session: AsyncSession, user_id: int, limit: int = 20
) -> tuple[list[OrderLine], int]:
    """The user's latest `limit` orders, newest first, and how many they have in all."""
    rows = (
        await session.execute(
            select(Order, col(Plan.title), col(TopupProduct.bonus_minor))
            .outerjoin(Plan, col(Plan.id) == col(Order.plan_id))
            .outerjoin(TopupProduct, col(TopupProduct.id) == col(Order.topup_id))
            .where(col(Order.user_id) == user_id)
            .order_by(col(Order.created_at).desc(), col(Order.id).desc())
            .limit(limit)
        )
    ).all()
    total = (
        await session.execute(
            select(func.count()).select_from(Order).where(col(Order.user_id) == user_id)
        )
    ).scalar_one()
    return [
        OrderLine(
            o.order_no,
            title or "",
            Money(o.amount_minor + o.wallet_minor + o.points_minor, o.currency),
            o.provider,
            o.status,
            o.created_at,
            o.wallet_minor,
            o.points_used,
            o.points_minor,
            o.kind,
            None if bonus is None else Money(int(bonus), o.currency),
        )
        for o, title, bonus in rows
    ], int(total)


# -- the owner -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MembersReport:
    members: list[tuple[User, Membership]]  # active ones, soonest end first; at most `limit`
    active: int
    lifetime: int
    renewing: int
    ended: int
    star: int = 0  # active through a Telegram Star subscription link (membership/channels.py)

    @property
    def more(self) -> int:
        return self.active - len(self.members)


async def group_members(
    session: AsyncSession, group_id: int, now: datetime, limit: int = 50
) -> MembersReport:
    in_group = col(Membership.chat_group_id) == group_id
    rows = (
        await session.execute(
            select(User, Membership)
            .join(User, col(User.id) == col(Membership.user_id))
            .where(in_group, active_now(now))
            .order_by(
                col(Membership.expires_at).is_(None),
                col(Membership.expires_at),
                col(Membership.id),
            )
            .limit(limit)
        )
    ).all()
    counts = (
        await session.execute(
            select(
                func.count().filter(active_now(now)),
                func.count().filter(active_now(now), col(Membership.expires_at).is_(None)),
                func.count().filter(active_now(now), col(Membership.auto_renew).is_(True)),
                func.count().filter(col(Membership.status).in_(ENDED)),
                func.count().filter(active_now(now), col(Membership.star_link).is_not(None)),
            )
            .select_from(Membership)
            .where(in_group)
        )
    ).one()
    return MembersReport([(u, m) for u, m in rows], *(int(c) for c in counts))


@dataclass
class Stats:
    groups: list[tuple[ChatGroup, int]] = field(default_factory=list)  # (group, active members)
    # Of those, per group id: active through a Telegram Star subscription link. Telegram
    # collects and keeps those Stars, so they are in no revenue figure.
    star_members: dict[int, int] = field(default_factory=dict)
    revenue: list[Money] = field(default_factory=list)  # net, all time, per currency
    revenue_recent: list[Money] = field(default_factory=list)  # net, last 30 days
    unexpected: list[Money] = field(default_factory=list)  # extra charges not refunded yet
    unexpected_count: int = 0  # how many extra charges still hold money
    renewals: int = 0  # renewal charges in the last 30 days
    ended: int = 0  # memberships that ended (expired or revoked) in 30 days
    active_at_start: int = 0  # memberships running 30 days ago
    # The wallet (issue 11). Plans paid with balance and points, per currency (not in
    # `revenue`, which is provider money only and equals the ledger): balance was revenue
    # when its top-up was sold.
    wallet_spent: list[Money] = field(default_factory=list)
    points_spent: list[Money] = field(default_factory=list)  # the points' value
    topups_sold: list[Money] = field(default_factory=list)  # net of refunds, all time
    # Balance owed to buyers service-wide (their balances and what is held for open
    # orders): a liability, not revenue.
    outstanding: list[Money] = field(default_factory=list)

    @property
    def churn(self) -> float | None:
        return self.ended / self.active_at_start if self.active_at_start else None


def _net(rows: Iterable[tuple[str, str, int]]) -> list[Money]:
    """Charges minus refunds and disputes (plus disputes won back), per currency;
    currencies with nothing left out."""
    total: dict[str, int] = defaultdict(int)
    for currency, kind, amount in rows:
        total[currency] += SIGN.get(kind, 0) * int(amount)
    return [Money(v, c) for c, v in sorted(total.items()) if v]


async def owner_stats(session: AsyncSession, owner_id: int | None, now: datetime) -> Stats:
    """Figures for the groups and plans of `owner_id` and of their linked account on the
    other platform (one business across both); None: every group, for admins."""
    since = now - WINDOW
    gq = select(ChatGroup).where(col(ChatGroup.active)).order_by(col(ChatGroup.id))
    pq = select(col(Plan.id))
    if owner_id is not None:
        linked = await linked_user_id(session, owner_id)
        ids = [owner_id] if linked is None else [owner_id, linked]
        gq = gq.where(col(ChatGroup.owner_user_id).in_(ids))
        pq = pq.where(col(Plan.owner_user_id).in_(ids))
    groups = list((await session.execute(gq)).scalars().all())
    stats = Stats()
    if not groups:
        return stats
    gids = [g.id for g in groups]
    active: dict[int, int] = dict(
        (
            await session.execute(
                select(col(Membership.chat_group_id), func.count())
                .where(col(Membership.chat_group_id).in_(gids), active_now(now))
                .group_by(col(Membership.chat_group_id))
            )
        ).all()
    )
    stats.groups = [(g, int(active.get(stored_id(g), 0))) for g in groups]
    stats.star_members = {
        int(gid): int(n)
        for gid, n in (
            await session.execute(
                select(col(Membership.chat_group_id), func.count())
                .where(
                    col(Membership.chat_group_id).in_(gids),
                    active_now(now),
                    col(Membership.star_link).is_not(None),
                )
                .group_by(col(Membership.chat_group_id))
            )
        ).all()
    }

    earning = select(col(Order.id)).where(
        col(Order.plan_id).in_(pq),
        col(Order.status).in_(EARNING),
    )
    own = col(Payment.extra).is_(False)
    money = (
        select(col(Payment.currency), col(Payment.kind), func.sum(col(Payment.amount_minor)))
        .where(col(Payment.order_id).in_(earning), own)
        .group_by(col(Payment.currency), col(Payment.kind))
    )
    stats.revenue = _net((await session.execute(money)).all())
    stats.revenue_recent = _net(
        (await session.execute(money.where(col(Payment.at) >= since))).all()
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
                    col(Payment.order_id).in_(earning),
                    col(Payment.kind) == "charge",
                    col(Payment.at) >= since,
                    own,
                    exists().where(
                        col(earlier.order_id) == col(Payment.order_id),
                        col(earlier.kind) == "charge",
                        col(earlier.extra).is_(False),
                        col(earlier.id) < col(Payment.id),
                    ),
                )
            )
        ).scalar_one()
    )
    stats.unexpected, stats.unexpected_count = await _unexpected(session, pq)
    await _wallet_figures(session, stats, pq, owner_id)

    # Churn: of the memberships running 30 days ago, how many have ended since. end_access
    # stamps updated_at when it ends one, and an ended row is not touched again until it is
    # granted anew (which makes it active, with a new starts_at).
    in_groups = col(Membership.chat_group_id).in_(gids)
    ended_since = and_(
        col(Membership.status).in_(ENDED),
        col(Membership.updated_at) >= since,
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
                    col(Membership.starts_at) <= since,
                    or_(col(Membership.expires_at).is_(None), col(Membership.expires_at) > since),
                    or_(col(Membership.status) == "active", ended_since),
                )
            )
        ).scalar_one()
    )
    return stats


def _per_currency(rows: Iterable[Any]) -> list[Money]:
    return [Money(int(v), str(c)) for c, v in sorted(rows) if v]


async def _wallet_figures(
    session: AsyncSession, stats: Stats, plans: Any, owner_id: int | None
) -> None:
    """Wallet spending on these plans (committed holds: a returned one was refunded), the
    top-ups sold (the owner's products; every product for admins) and what the service owes
    buyers in balance."""
    committed = and_(
        col(WalletHold.order_id) == col(Order.id),
        col(WalletHold.status) == "committed",
        col(WalletAccount.id) == col(WalletHold.account_id),
    )
    on_plans = col(Order.plan_id).in_(plans)
    stats.wallet_spent = _per_currency(
        (
            await session.execute(
                select(col(WalletAccount.currency), func.sum(col(WalletHold.amount)))
                .where(committed, on_plans, col(WalletAccount.kind) == "balance")
                .group_by(col(WalletAccount.currency))
            )
        ).all()
    )
    stats.points_spent = _per_currency(
        (
            await session.execute(
                select(col(Order.currency), func.sum(col(Order.points_minor)))
                .where(committed, on_plans, col(WalletAccount.kind) == "points")
                .group_by(col(Order.currency))
            )
        ).all()
    )
    products = select(col(TopupProduct.id))
    if owner_id is not None:
        products = products.where(col(TopupProduct.owner_user_id) == owner_id)
    topups = select(col(Order.id)).where(
        col(Order.kind) == "topup",
        col(Order.topup_id).in_(products),
        col(Order.status).in_(EARNING),
    )
    stats.topups_sold = _net(
        (
            await session.execute(
                select(
                    col(Payment.currency), col(Payment.kind), func.sum(col(Payment.amount_minor))
                )
                .where(col(Payment.order_id).in_(topups), col(Payment.extra).is_(False))
                .group_by(col(Payment.currency), col(Payment.kind))
            )
        ).all()
    )
    balances = (
        await session.execute(
            select(col(WalletAccount.currency), func.sum(col(WalletAccount.balance)))
            .where(col(WalletAccount.kind) == "balance")
            .group_by(col(WalletAccount.currency))
        )
    ).all()
    held = (
        await session.execute(
            select(col(WalletAccount.currency), func.sum(col(WalletHold.amount)))
            .where(
                col(WalletAccount.id) == col(WalletHold.account_id),
                col(WalletAccount.kind) == "balance",
                col(WalletHold.status) == "held",
            )
            .group_by(col(WalletAccount.currency))
        )
    ).all()
    owed: dict[str, int] = defaultdict(int)
    for currency, amount in [*balances, *held]:
        owed[str(currency)] += int(amount or 0)
    stats.outstanding = _per_currency(owed.items())


async def _unexpected(session: AsyncSession, plans: Any) -> tuple[list[Money], int]:
    """Extra charges of these plans' orders still holding money (not refunded, or disputed
    back), per currency, and how many they are."""
    back = aliased(Payment)
    sign = case(
        (col(back.kind) == "dispute_won", col(back.amount_minor)), else_=-col(back.amount_minor)
    )
    reversed_ = (
        select(func.coalesce(func.sum(sign), 0))
        .where(
            col(back.provider) == col(Payment.provider),
            col(back.reverses) == col(Payment.provider_payment_id),
        )
        .scalar_subquery()
    )
    left = (col(Payment.amount_minor) + reversed_).label("left")
    rows = (
        await session.execute(
            select(col(Payment.currency), left)
            .join(Order, col(Order.id) == col(Payment.order_id))
            .where(
                col(Order.plan_id).in_(plans),
                col(Payment.extra).is_(True),
                col(Payment.kind) == "charge",
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
            .join(User, col(User.id) == col(Membership.user_id))
            .where(col(Membership.chat_group_id) == group_id)
            .order_by(col(Membership.id))
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
                # Access through a Star subscription link: Telegram billed it (no order row).
                "provider": STAR_PROVIDER if m.star_link else "",
            }
        )
    orders = (
        await session.execute(
            select(Order, User, col(Plan.title))
            .join(User, col(User.id) == col(Order.user_id))
            .join(Plan, col(Plan.id) == col(Order.plan_id))
            .where(
                col(Order.plan_id).in_(
                    select(col(PlanGroup.plan_id)).where(col(PlanGroup.chat_group_id) == group_id)
                )
            )
            .order_by(col(Order.created_at), col(Order.id))
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
