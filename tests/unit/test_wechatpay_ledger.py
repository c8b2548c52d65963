"""Property-based stories of WeChat Pay notifications per order (hypothesis), the WeChat Pay
counterpart of test_ledger_properties.py: paid (or paid a wrong amount), paid late on an
expired order, refunded in part, in full, or in two steps (each REFUND.SUCCESS names its own
refund only, no running total), a refund that went ABNORMAL; every notification delivered
once or more (WeChat's retries: the same id; or a resend under a new id) and all deliveries
shuffled, signed and encrypted for real, through billing.ingest, on SQLite and PostgreSQL.
Whatever the order of delivery:

- each money movement is recorded once; the order's own charges are its amount if it was
  paid the right amount, else 0; charges - refunds is what the story left with us;
- a wrong amount is kept apart as unexpected money, once;
- access is active exactly when the order was paid the right amount and not refunded in full;
- /stats revenue equals the ledger to the minor unit.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel import col

from billing.ingest import ingest_webhook
from membership.catalog import add_plan, register_group
from membership.grants import is_active
from membership.reports import owner_stats
from sandbox.wechatpay.crypto import random_text
from storage.models import Membership, Order, Payment, WebhookEvent
from storage.money import Money
from storage.queries import get_or_create_user
from tests.unit.test_wechatpay_webhooks import (
    envelope,
    headers_for,
    make_provider,
    refund,
    transaction,
)

PRICE = 990
_seq = itertools.count(1)


@dataclass(frozen=True)
class Story:
    expired_first: bool  # the order timed out (and was closed) before the payment reached us
    paid_amount: int  # what the Native order charged (PRICE, or a wrong amount)
    refunds: tuple[int, ...]  # each its own refund (REFUND.SUCCESS)
    abnormal: bool  # one more refund attempt that went ABNORMAL (no money moved)


@st.composite
def stories(draw: Any) -> Story:
    paid = draw(st.sampled_from([PRICE, PRICE, PRICE, PRICE - 1]))
    kind = "none" if paid != PRICE else draw(st.sampled_from(["none", "partial", "full", "two"]))
    if kind == "two":
        first = draw(st.integers(1, PRICE - 1))
        refunds: tuple[int, ...] = (first, PRICE - first)
    else:
        refunds = {"none": (), "partial": (draw(st.integers(1, PRICE - 1)),), "full": (PRICE,)}[
            kind
        ]
    return Story(draw(st.booleans()), paid, refunds, paid == PRICE and draw(st.booleans()))


def notifications(order_no: str, s: Story) -> list[bytes]:
    """WeChat Pay's notifications for one order's story, one of each."""
    tid = "4200" + random_text(24, "0123456789")
    amount = {"total": s.paid_amount, "payer_total": s.paid_amount, "currency": "CNY"}
    out = [
        envelope(
            "TRANSACTION.SUCCESS",
            transaction(out_trade_no=order_no, transaction_id=tid, amount=amount),
        )
    ]
    steps = [("SUCCESS", r) for r in s.refunds] + ([("ABNORMAL", PRICE)] if s.abnormal else [])
    for status, amt in steps:
        rf = refund(
            status,
            out_trade_no=order_no,
            transaction_id=tid,
            refund_id="5030" + random_text(25, "0123456789"),
            out_refund_no=random_text(20),
            amount={"total": PRICE, "refund": amt, "payer_total": PRICE, "payer_refund": amt},
        )
        out.append(envelope(f"REFUND.{status}", rf, kind="refund"))
    return out


def resent(body: bytes) -> bytes:
    """The same notification under a new id (as a resend by hand would be)."""
    data = json.loads(body)
    data["id"] = "EV-" + random_text(20)
    return json.dumps(data, ensure_ascii=False).encode()


async def _shop(db: Any, now: Any) -> tuple[Any, Any]:
    n = next(_seq)
    async with db.transaction() as s:
        owner = await get_or_create_user(s, "telegram", f"7{n:06d}", now, username=f"w{n}")
        group, _ = await register_group(s, owner, "telegram", f"-200{n:07d}", f"W{n}", now)
        plan = await add_plan(s, owner, [group], 30, [Money(PRICE, "CNY")], "月卡", now)
    return owner, plan


async def _orders(db: Any, plan: Any, stories_: list[Story], now: Any) -> list[Order]:
    orders = []
    async with db.transaction() as s:
        for story in stories_:
            n = next(_seq)
            buyer = await get_or_create_user(s, "telegram", f"6{n:06d}", now)
            order = Order(
                order_no=f"GPW{n:07d}",
                user_id=buyer.id,
                plan_id=plan.id,
                provider="wechatpay",
                amount_minor=PRICE,
                currency="CNY",
                status="expired" if story.expired_first else "pending",
                created_at=now,
                provider_ref=f"GPW{n:07d}",
            )
            s.add(order)
            orders.append(order)
    return orders


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), story_list=st.lists(stories(), min_size=1, max_size=3))
async def test_wechatpay_stories_leave_the_ledger_true(db, now, tmp_path_factory, data, story_list):
    provider = make_provider(Path(tmp_path_factory.mktemp("keys")))
    owner, plan = await _shop(db, now)
    orders = await _orders(db, plan, story_list, now)
    bodies = [
        b for o, s in zip(orders, story_list, strict=True) for b in notifications(o.order_no, s)
    ]
    copies = data.draw(st.lists(st.tuples(st.integers(0, 50), st.booleans()), max_size=6))
    for index, new_id in copies:
        body = bodies[index % len(bodies)]
        bodies.append(resent(body) if new_id else body)
    bodies = data.draw(st.permutations(bodies))
    for body in bodies:
        ack, _ = await ingest_webhook(db, provider, headers_for(body), body, now)
        assert ack.status == 204, ack.body

    ids = {json.loads(b)["id"] for b in bodies}
    async with db.session() as s:
        pays = list(
            (
                await s.execute(
                    select(Payment).where(col(Payment.order_id).in_([o.id for o in orders]))
                )
            ).scalars()
        )
        got = {
            o.id: o
            for o in (
                await s.execute(select(Order).where(col(Order.id).in_([o.id for o in orders])))
            ).scalars()
        }
        members = {
            m.user_id: m
            for m in (
                await s.execute(
                    select(Membership).where(
                        col(Membership.user_id).in_([o.user_id for o in orders])
                    )
                )
            ).scalars()
        }
        events = list(
            (
                await s.execute(select(WebhookEvent).where(col(WebhookEvent.event_id).in_(ids)))
            ).scalars()
        )
        stats = await owner_stats(s, owner.id, now)
    assert len(events) == len(ids) and all(e.processed_at for e in events)

    revenue = unexpected = 0
    sign = {"charge": 1, "refund": -1}
    for order, story in zip(orders, story_list, strict=True):
        rows = [p for p in pays if p.order_id == order.id]
        own, extra = [p for p in rows if not p.extra], [p for p in rows if p.extra]
        right = story.paid_amount == PRICE
        assert (len(own), len(extra)) == ((1 + len(story.refunds), 0) if right else (0, 1)), rows
        net = sum(sign[p.kind] * p.amount_minor for p in own)
        assert net == (PRICE - sum(story.refunds) if right else 0), (story, rows)
        revenue += net
        unexpected += sum(sign[p.kind] * p.amount_minor for p in extra)
        full = sum(story.refunds) >= PRICE
        m, o = members.get(order.user_id), got[order.id]
        assert (m is not None and is_active(m, now)) == (right and not full), (story, o.status)
        assert o.status == ("failed" if not right else "refunded" if full else "paid"), story
    assert stats.revenue == ([Money(revenue, "CNY")] if revenue else [])
    assert stats.unexpected == ([Money(unexpected, "CNY")] if unexpected else [])
    await provider.close()


async def test_a_notification_we_could_not_decrypt_is_kept_and_replays_after_the_fix(
    db, now, tmp_path
):
    """A wrong APIv3 key in our config (rotated in the console, not here): the notification
    verifies (the platform key signs it) but cannot be decrypted. It is stored raw with its
    error and acknowledged; with the key fixed, `webhooks replay` applies it."""
    from billing.replay import ReplayStatus, replay_event

    _owner, plan = await _shop(db, now)
    (order,) = await _orders(db, plan, [Story(False, PRICE, (), False)], now)
    body = notifications(order.order_no, Story(False, PRICE, (), False))[0]
    event_id = json.loads(body)["id"]
    stale = make_provider(tmp_path / "stale", apiv3="x" * 32)
    ack, outcome = await ingest_webhook(db, stale, headers_for(body), body, now)
    assert (ack.status, outcome) == (204, "malformed")
    (row,) = await _rows(db, WebhookEvent, col(WebhookEvent.event_id) == event_id)
    assert row.error is not None and "does not decrypt" in row.error and row.raw_body == body
    assert await _rows(db, Payment) == []

    fixed = make_provider(tmp_path / "fixed")
    result = await replay_event(db, fixed, event_id, now)
    assert result.status is ReplayStatus.APPLIED, result
    (payment,) = await _rows(db, Payment, col(Payment.order_id) == order.id)
    assert (payment.kind, payment.amount_minor, payment.currency) == ("charge", PRICE, "CNY")
    (o,) = await _rows(db, Order, col(Order.id) == order.id)
    assert o.status == "paid"
    await stale.close()
    await fixed.close()


async def _rows(db: Any, model: Any, *where: Any) -> list[Any]:
    async with db.session() as s:
        return list((await s.execute(select(model).where(*where))).scalars())
