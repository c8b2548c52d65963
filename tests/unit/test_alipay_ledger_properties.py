"""Property-based stories of Alipay orders (hypothesis), through the real webhook path and
the local Alipay gateway, on SQLite and PostgreSQL: each order is paid (or, in a crafted
notification, paid the wrong amount), maybe refunded by the owner in one or two steps (the
refund call's own RefundSettler notice, and Alipay's refund notification naming the same
out_biz_no), maybe TRADE_FINISHED; every notification delivered once or more, shuffled as
far as what really happens allows (a refund is made after the payment reached us; the next
refund only after the previous one settled). Whatever the order:

- the order's own charge is recorded once (TRADE_SUCCESS and TRADE_FINISHED are one trade);
- each refund is recorded once, with its own amount, and never counted as a payment;
- charges − refunds is what the story left with us; a wrong amount is kept apart;
- the buyer has access exactly when the order is paid and not refunded in full;
- /stats revenue equals the ledger to the fen.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel import col

from billing.events import WebhookNotice
from billing.ingest import ingest_webhook, process_notice
from billing.provider import CheckoutRequest
from billing.providers.alipay_provider import AlipayProvider
from membership.catalog import add_plan, register_group
from membership.grants import is_active
from membership.reports import owner_stats
from sandbox.alipay_host import FakeAlipay, private_pem, public_pem, signed_notification
from storage.models import Membership, Order, Payment
from storage.money import Money
from storage.queries import get_or_create_user

PRICE = 990
_seq = itertools.count(1)


@dataclass(frozen=True)
class Story:
    right_amount: bool
    refunds: tuple[int, ...]  # the owner's refund steps (fen)
    finished: bool  # TRADE_FINISHED after the refunds (only if not refunded in full)


@st.composite
def stories(draw: Any) -> Story:
    right = draw(st.sampled_from([True, True, True, False]))
    kind = draw(st.sampled_from(["none", "partial", "full", "two_steps"])) if right else "none"
    if kind == "partial":
        refunds: tuple[int, ...] = (draw(st.integers(1, PRICE - 1)),)
    elif kind == "full":
        refunds = (PRICE,)
    elif kind == "two_steps":
        first = draw(st.integers(1, PRICE - 1))
        refunds = (first, draw(st.sampled_from([PRICE - first, max(1, (PRICE - first) // 2)])))
    else:
        refunds = ()
    return Story(right, refunds, sum(refunds) < PRICE and right and draw(st.booleans()))


@dataclass
class Delivery:
    key: str
    body: bytes | None = None  # a notification
    notice: WebhookNotice | None = None  # a RefundSettler notice (the outbox applies it)
    after: set[str] = field(default_factory=set)  # keys that must be delivered before


async def _make_story(
    host: FakeAlipay, provider: AlipayProvider, order_no: str, s: Story
) -> list[Delivery]:
    """Play the story at the gateway (the real calls), keeping each notification's body."""
    await provider.create_checkout(
        CheckoutRequest(order_no, "Monthly", PRICE, "CNY", False, 30, "", "", "1")
    )
    trade_no = host.pay(order_no)
    paid = host.notifications[-1]
    if not s.right_amount:  # Alipay's signature on a body that says another amount
        fields = dict(paid.fields, total_amount="9.89")
        return [Delivery(f"{order_no}:paid", body=signed_notification(host.alipay_key, fields))]
    out = [Delivery(f"{order_no}:paid", body=paid.body)]
    settled_before = f"{order_no}:paid"
    for n, step in enumerate(s.refunds):
        rid = await provider.refund(trade_no, step, "CNY", idempotency_key=f"{order_no}-r{n}")
        note = host.notifications[-1]
        assert note.fields["out_biz_no"] == rid
        settle_key = f"{order_no}:settle{n}"
        out.append(
            Delivery(
                settle_key,
                notice=provider.refund_notice(trade_no, step, "CNY", rid, order_no),
                after={settled_before},
            )
        )
        out.append(Delivery(f"{order_no}:refund_note{n}", body=note.body, after={settled_before}))
        settled_before = settle_key
    if s.finished:
        host.finish(order_no)
        out.append(Delivery(f"{order_no}:finished", body=host.notifications[-1].body))
    return out


def schedule(deliveries: list[Delivery], copies: list[int], keys: list[int]) -> list[Delivery]:
    items = deliveries + [deliveries[i % len(deliveries)] for i in copies]
    ranked = sorted(zip(keys, range(len(items)), items, strict=True), key=lambda t: t[:2])
    pending = [d for _, _, d in ranked]
    done: set[str] = set()
    out: list[Delivery] = []
    while pending:
        d = next(d for d in pending if d.after <= done)
        pending.remove(d)
        out.append(d)
        done.add(d.key)
    return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), story_list=st.lists(stories(), min_size=1, max_size=3))
async def test_alipay_stories_leave_the_ledger_right(db, now, data, story_list):
    host = FakeAlipay(retry_delays=())
    section = await host.start_for("http://127.0.0.1:9")
    host.lose_next(10**6)  # the test delivers every notification itself, in its own order
    provider = AlipayProvider(
        section["app_id"],
        private_pem(host.app_key),
        public_pem(host.alipay_key),
        section["gateway"],
        "http://127.0.0.1:9",
    )
    try:
        n = next(_seq)
        async with db.transaction() as s:
            owner = await get_or_create_user(s, "telegram", f"7{n:06d}", now)
            group, _ = await register_group(s, owner, "telegram", f"-200{n:07d}", f"A{n}", now)
            plan = await add_plan(s, owner, [group], 30, [Money(PRICE, "CNY")], "Monthly", now)
            orders = []
            for _ in story_list:
                m = next(_seq)
                buyer = await get_or_create_user(s, "telegram", f"6{m:06d}", now)
                order = Order(
                    order_no=f"GPA{m:07d}",
                    user_id=buyer.id,
                    plan_id=plan.id,
                    provider="alipay",
                    amount_minor=PRICE,
                    currency="CNY",
                    status="pending",
                    created_at=now,
                    provider_ref=f"GPA{m:07d}",
                )
                s.add(order)
                orders.append(order)
        deliveries = [
            d
            for o, st_ in zip(orders, story_list, strict=True)
            for d in await _make_story(host, provider, o.order_no, st_)
        ]
        copies = data.draw(st.lists(st.integers(0, 50), max_size=5))
        keys = data.draw(
            st.lists(
                st.integers(0, 1000),
                min_size=len(deliveries) + len(copies),
                max_size=len(deliveries) + len(copies),
            )
        )
        for d in schedule(deliveries, copies, keys):
            if d.body is not None:
                ack, outcome = await ingest_webhook(db, provider, {}, d.body, now)
                assert (ack.status, ack.body) == (200, b"success"), (d.key, outcome)
            else:
                assert d.notice is not None
                await process_notice(db, "alipay", d.notice, now)

        async with db.session() as s:
            ids = [o.id for o in orders]
            pays = list(await s.execute(select(Payment).where(col(Payment.order_id).in_(ids))))
            pays = [p for (p,) in pays]
            got = {
                o.id: o
                for o in (await s.execute(select(Order).where(col(Order.id).in_(ids)))).scalars()
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
            stats = await owner_stats(s, owner.id, now)
        revenue = 0
        for order, story in zip(orders, story_list, strict=True):
            rows = [p for p in pays if p.order_id == order.id]
            own = [p for p in rows if not p.extra]
            extra = [p for p in rows if p.extra]
            o, member = got[order.id], members.get(order.user_id)
            if not story.right_amount:
                assert own == [] and [(p.kind, p.amount_minor) for p in extra] == [("charge", 989)]
                assert o.status == "failed" and member is None
                continue
            assert extra == []
            assert sorted((p.kind, p.amount_minor) for p in own) == sorted(
                [("charge", PRICE)] + [("refund", r) for r in story.refunds]
            ), (story, rows)
            net = PRICE - sum(story.refunds)
            revenue += net
            full = net == 0
            assert o.status == ("refunded" if full else "paid"), story
            assert (member is not None and is_active(member, now)) == (not full), story
            if not full:
                assert member.expires_at == now + timedelta(days=30)  # granted once
        assert stats.revenue == ([Money(revenue, "CNY")] if revenue else [])
    finally:
        await provider.close()
        await host.stop()
