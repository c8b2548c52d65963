"""A notification verified for one QR provider that names an order of another (an Alipay
notice naming a WeChat Pay order's number, a WeChat Pay one naming an Alipay or a Stripe
order) grants nothing and records no money: the order is not that provider's to settle."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from billing.ingest import ingest_webhook
from membership.catalog import add_plan, register_group
from sandbox.alipay_host import signed_notification
from storage.models import Order, Payment
from storage.money import Money
from storage.queries import get_or_create_user
from tests.unit.test_alipay_provider import Pair, paid_fields, pair  # noqa: F401 - fixture
from tests.unit.test_wechatpay_webhooks import envelope, headers_for, make_provider, transaction

_seq = itertools.count(1)


async def _order(db: Any, now: Any, provider: str) -> Order:
    n = next(_seq)
    async with db.transaction() as s:
        owner = await get_or_create_user(s, "telegram", f"81{n:05d}", now)
        group, _ = await register_group(s, owner, "telegram", f"-300{n:07d}", f"X{n}", now)
        plan = await add_plan(s, owner, [group], 30, [Money(990, "CNY")], "月卡", now)
        buyer = await get_or_create_user(s, "telegram", f"82{n:05d}", now)
        order = Order(
            order_no=f"GPX{provider[:2].upper()}{n:06d}",
            user_id=buyer.id,
            plan_id=plan.id,
            provider=provider,
            amount_minor=990,
            currency="CNY",
            status="pending",
            created_at=now,
            provider_ref=f"GPX{provider[:2].upper()}{n:06d}",
        )
        s.add(order)
    return order


async def _unchanged(db: Any, order: Order) -> None:
    async with db.session() as s:
        got = await s.get(Order, order.id)
        pays = list(
            (await s.execute(select(Payment).where(col(Payment.order_id) == order.id))).scalars()
        )
    assert got is not None and got.status == "pending" and pays == []


@pytest.mark.parametrize("victim", ["wechatpay", "stripe"])
async def test_an_alipay_notice_for_another_providers_order_grants_nothing(
    db,
    now,
    pair: Pair,  # noqa: F811
    victim: str,
):
    order = await _order(db, now, victim)
    body = signed_notification(
        pair.host.alipay_key, paid_fields(pair.host, out_trade_no=order.order_no)
    )
    ack, outcome = await ingest_webhook(db, pair.provider, {}, body, now)
    assert (ack.status, ack.body, outcome) == (200, b"success", "unknown_order")
    await _unchanged(db, order)


@pytest.mark.parametrize("victim", ["alipay", "stripe"])
async def test_a_wechatpay_notice_for_another_providers_order_grants_nothing(
    db, now, tmp_path: Path, victim: str
):
    provider = make_provider(tmp_path)
    order = await _order(db, now, victim)
    body = envelope("TRANSACTION.SUCCESS", transaction(out_trade_no=order.order_no))
    ack, outcome = await ingest_webhook(db, provider, headers_for(body), body, now)
    assert (ack.status, outcome) == (204, "unknown_order")
    await _unchanged(db, order)
    await provider.close()
