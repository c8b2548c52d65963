"""Two different orders of one buyer for one group, paid at the same moment: on PostgreSQL
both transactions find no membership and both create it. Both webhooks must answer 200 and
the one membership must carry both paid periods (the insert is an upsert on (user, group))."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from billing.ingest import ingest_webhook
from billing.providers.sandbox_provider import SandboxProvider
from storage.models import Membership, Order, Payment
from storage.queries import get_or_create_user
from tests.factories import SANDBOX_SECRET, make_shop, sandbox_event

BUYERS = 8  # pairs paid at once: enough that some pair truly races on PostgreSQL


@pytest.fixture
def provider() -> SandboxProvider:
    return SandboxProvider(SANDBOX_SECRET, "http://127.0.0.1:1")


async def _order(db, shop, buyer_id, now) -> Order:
    async with db.transaction() as s:
        order = Order(
            order_no=f"GPC{secrets.token_hex(4).upper()}",
            user_id=buyer_id,
            plan_id=shop.plan.id,
            provider="sandbox",
            amount_minor=499,
            currency="USD",
            status="pending",
            created_at=now,
        )
        s.add(order)
    return order


async def test_two_orders_paid_at_once_both_extend_one_membership(db, provider, now):
    shop = await make_shop(db, now, duration_days=30)
    pairs = []
    for n in range(BUYERS):
        async with db.transaction() as s:
            buyer = await get_or_create_user(s, "telegram", f"77{n:04d}", now)
        pairs.append((await _order(db, shop, buyer.id, now), await _order(db, shop, buyer.id, now)))

    acks = await asyncio.gather(
        *(
            ingest_webhook(db, provider, *sandbox_event(order), now)
            for pair in pairs
            for order in pair
        )
    )

    assert [(ack.status, outcome) for ack, outcome in acks] == [(200, "granted")] * 2 * BUYERS
    async with db.session() as s:
        ms = list((await s.execute(select(Membership).order_by(col(Membership.id)))).scalars())
        charges = (await s.execute(select(func.count()).select_from(Payment))).scalar_one()
    assert len(ms) == BUYERS and charges == 2 * BUYERS
    # Each buyer paid two 30-day periods: whichever came second extended the first.
    assert {m.expires_at for m in ms} == {now + timedelta(days=60)}
    assert {m.status for m in ms} == {"active"}
