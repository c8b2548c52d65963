"""/my, /orders, /members, /stats and /export read what payments and grants wrote."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

from billing.ingest import ingest_webhook
from billing.providers.sandbox_provider import SandboxProvider
from membership.grants import grant_days
from membership.removal import end_access
from membership.reports import (
    auto_renewing,
    export_group,
    group_members,
    owner_stats,
    user_accesses,
    user_orders,
)
from storage.db import Database
from storage.models import ChatGroup, Membership, Order, Payment, User
from storage.money import Money
from storage.queries import get_or_create_user
from tests.factories import SANDBOX_SECRET, Shop, make_order, make_shop, sandbox_event

DAY = timedelta(days=1)


USD_499 = Money(499, "USD")


async def paid_order(db: Database, shop: Shop, now: datetime, price: Money = USD_499) -> Order:
    order = await make_order(db, shop, now, price=price)
    sandbox = SandboxProvider(SANDBOX_SECRET, "http://127.0.0.1:1")
    _ack, outcome = await ingest_webhook(db, sandbox, *sandbox_event(order), now)
    assert outcome == "granted", outcome
    return order


async def grant(
    db: Database,
    shop: Shop,
    platform_user_id: str,
    days: int | None,
    now: datetime,
    *,
    username: str | None = None,
    sub: str | None = None,
) -> Membership:
    async with db.transaction() as s:
        user = await get_or_create_user(s, "telegram", platform_user_id, now, username=username)
        group = await s.get(ChatGroup, shop.group.id)
        return await grant_days(
            s, user, group, days, now, actor="test", reason="test", subscription_id=sub
        )


async def end(db: Database, mid: int, now: datetime, status: str = "expired") -> None:
    async with db.transaction() as s:
        m = await s.get(Membership, mid)
        assert await end_access(
            s, m, now, status=status, actor="test", reason="test", notice_key=None
        )


async def test_user_accesses_running_first_then_ended(db, now):
    shop = await make_shop(db, now, groups=3)
    async with db.transaction() as s:
        buyer = await s.get(User, shop.buyer.id)
        g1, g2, g3 = [await s.get(ChatGroup, i) for i in (1, 2, 3)]
        m1 = await grant_days(s, buyer, g1, 30, now, actor="t", reason="t")
        await grant_days(s, buyer, g2, None, now, actor="t", reason="t")
        await grant_days(s, buyer, g3, 5, now, actor="t", reason="t", subscription_id="sub_1")
    await end(db, m1.id, now + DAY)
    async with db.session() as s:
        got = await user_accesses(s, shop.buyer.id)
        renewing = await auto_renewing(s, shop.buyer.id)
    assert [(a.group.id, a.membership.status) for a in got] == [
        (3, "active"),
        (2, "active"),
        (1, "expired"),
    ]
    assert [a.group.id for a in renewing] == [3]


async def test_user_orders_newest_first_capped(db, now):
    shop = await make_shop(db, now)
    for i in range(3):
        await paid_order(db, shop, now + i * DAY)
    async with db.session() as s:
        shown, total = await user_orders(s, shop.buyer.id, limit=2)
        none, zero = await user_orders(s, shop.owner.id)
    assert total == 3 and [o.created_at for o in shown] == [now + 2 * DAY, now + DAY]
    assert shown[0].price == Money(499, "USD") and shown[0].status == "paid"
    assert shown[0].plan == "Monthly" and shown[0].provider == "sandbox"
    assert (none, zero) == ([], 0)


async def test_group_members_counts_and_truncates(db, now):
    shop = await make_shop(db, now)
    for i in range(5):
        await grant(db, shop, str(3000 + i), 10 + i, now, username=f"user{i}")
    await grant(db, shop, "4000", None, now)
    await grant(db, shop, "4001", 30, now, sub="sub_9")
    gone = await grant(db, shop, "4002", 30, now)
    await end(db, gone.id, now, status="revoked")
    await grant(db, shop, "4003", 1, now - 2 * DAY)  # lapsed, awaiting removal: not active
    async with db.session() as s:
        r = await group_members(s, shop.group.id, now, limit=3)
    assert (r.active, r.lifetime, r.renewing, r.ended, r.more) == (7, 1, 1, 1, 4)
    assert [u.username for u, _ in r.members] == ["user0", "user1", "user2"]


async def test_owner_stats(db, now):
    shop = await make_shop(db, now - 60 * DAY, prices=(Money(499, "USD"), Money(250, "XTR")))
    old = await paid_order(db, shop, now - 40 * DAY)
    await paid_order(db, shop, now - 5 * DAY, price=Money(250, "XTR"))
    # A renewal of the old order within the window, and a refund of part of it.
    async with db.transaction() as s:
        for kind, amount, pid in [("charge", 499, "renewal_1"), ("refund", 100, "refund_1")]:
            s.add(
                Payment(
                    order_id=old.id,
                    provider="sandbox",
                    provider_payment_id=pid,
                    kind=kind,
                    amount_minor=amount,
                    currency="USD",
                    at=now - 3 * DAY,
                )
            )
        # A mismatched payment leaves its order failed: not revenue.
        bad = Order(
            order_no="GPBAD",
            user_id=shop.buyer.id,
            plan_id=shop.plan.id,
            provider="sandbox",
            amount_minor=499,
            currency="USD",
            status="failed",
            created_at=now,
        )
        s.add(bad)
        await s.flush()
        s.add(
            Payment(
                order_id=bad.id,
                provider="sandbox",
                provider_payment_id="bad",
                kind="charge",
                amount_minor=1,
                currency="USD",
                at=now,
            )
        )
    # Churn: two running 30 days ago, one of them ended since; one started and ended since.
    a = await grant(db, shop, "5001", 60, now - 45 * DAY)
    await grant(db, shop, "5002", None, now - 45 * DAY)
    c = await grant(db, shop, "5003", 10, now - 10 * DAY)
    await end(db, a.id, now - 2 * DAY, status="revoked")
    await end(db, c.id, now - DAY)
    async with db.session() as s:
        st = await owner_stats(s, shop.owner.id, now)
        nobody = await owner_stats(s, shop.buyer.id, now)
        everyone = await owner_stats(s, None, now)
    # Running now: the buyer (bought again 5 days ago) and 5002 (lifetime).
    assert [(g.id, n) for g, n in st.groups] == [(shop.group.id, 2)]
    assert st.revenue == [Money(898, "USD"), Money(250, "XTR")]
    assert st.revenue_recent == [Money(399, "USD"), Money(250, "XTR")]
    assert st.renewals == 1
    # Running 30 days ago: 5001 and 5002. (The buyer's first 30 days ran then too, but their
    # access lapsed before they bought again, and starts_at counts from the new purchase.)
    assert (st.ended, st.active_at_start) == (2, 2)
    assert st.churn == 1.0
    assert nobody.groups == [] and nobody.churn is None
    assert everyone.revenue == st.revenue


async def test_export_group_csv(db, now):
    shop = await make_shop(db, now)
    order = await paid_order(db, shop, now)
    await grant(db, shop, "6001", None, now, username="李雷")
    async with db.session() as s:
        exp = await export_group(s, shop.group.id)
        other = await export_group(s, 999)
    assert exp.data.startswith(b"\xef\xbb\xbf") and (exp.members, exp.orders) == (2, 1)
    rows = list(csv.DictReader(io.StringIO(exp.data.decode("utf-8-sig"))))
    members = [r for r in rows if r["record"] == "member"]
    (o,) = [r for r in rows if r["record"] == "order"]
    assert [(r["telegram_id"], r["status"], r["expires_at"]) for r in members] == [
        ("2000", "active", (now + 30 * DAY).isoformat()),
        ("6001", "active", ""),
    ]
    assert members[1]["username"] == "李雷"
    assert (o["order_no"], o["amount"], o["currency"], o["status"], o["plan"], o["paid_at"]) == (
        order.order_no,
        "4.99",
        "USD",
        "paid",
        "Monthly",
        now.isoformat(),
    )
    assert (other.members, other.orders) == (0, 0)
