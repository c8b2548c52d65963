"""Property-based tests of the ledger (hypothesis): random stories of Stripe events per
order — paid (or paid the wrong amount), paid late on an expired order, paid a second time,
refunded in part or in full, disputed and the dispute won or lost, the extra charge refunded —
each event delivered once or more (same or new event id) and all deliveries shuffled, through
the real webhook path (signed Stripe events, billing.ingest, one transaction each), on SQLite
and PostgreSQL. Whatever the order of delivery:

- per order, the order's own charges are its amount if it was paid the right amount, else 0,
  and charges − refunds − (disputes not won) is exactly the money the story left with us;
- unexpected charges are kept apart, each once, and what is left of them is what the story
  did not refund;
- no money movement is recorded twice (one payment row per movement);
- a buyer's membership is active exactly when their order is paid and not reversed;
- /stats revenue (membership/reports.py) equals the ledger to the minor unit.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel import col

from billing.ingest import ingest_webhook
from billing.providers.stripe_provider import StripeProvider
from membership.catalog import add_plan, register_group
from membership.grants import is_active
from membership.reports import owner_stats
from storage.models import Membership, Order, Payment, WebhookEvent
from storage.money import Money
from storage.queries import get_or_create_user
from tests.stripe_fixtures import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    completed_session,
    dispute,
    new_id,
    refunded_charge,
    signed,
    stripe_object,
)

PRICE = 499
_seq = itertools.count(1)


@dataclass(frozen=True)
class Story:
    """What happens to one order at Stripe (the truth the ledger must end up telling)."""

    expired_first: bool  # the order timed out before its payment arrived
    paid_amount: int  # what the buyer's checkout charged (PRICE, or a wrong amount)
    refunds: tuple[int, ...]  # refund steps of the order's charge (each its own refund)
    dispute: str | None  # None, "open", "won" or "lost"
    extra: int | None  # a second charge of this amount (EUR), if any
    extra_refunded: bool  # the owner refunded that second charge


@st.composite
def stories(draw: Any) -> Story:
    paid = draw(st.sampled_from([PRICE, PRICE, PRICE, PRICE - 1]))
    reversal = (
        "none"
        if paid != PRICE
        else draw(st.sampled_from(["none", "partial", "full", "two_steps", "dispute"]))
    )
    refunds = {
        "none": (),
        "dispute": (),
        "partial": (draw(st.integers(1, PRICE - 1)),),
        "full": (PRICE,),
    }.get(reversal)
    if refunds is None:  # two steps adding up to the whole
        first = draw(st.integers(1, PRICE - 1))
        refunds = (first, PRICE - first)
    extra = draw(st.one_of(st.none(), st.integers(1, 100_000)))
    return Story(
        expired_first=draw(st.booleans()),
        paid_amount=paid,
        refunds=refunds,
        dispute=draw(st.sampled_from(["open", "won", "lost"])) if reversal == "dispute" else None,
        extra=extra,
        extra_refunded=extra is not None and draw(st.booleans()),
    )


@dataclass
class Delivery:
    event_type: str
    obj: dict[str, Any]
    event_id: str
    after: str | None = None  # an event id that must be delivered before this one


def story_events(order_no: str, s: Story) -> list[Delivery]:
    """Stripe's events for one order's story (one delivery each; duplicates come later)."""
    pi, ch = new_id("pi"), new_id("ch")
    meta = {"order_no": order_no}
    out = [
        Delivery(
            "checkout.session.completed",
            completed_session(order_no, amount=s.paid_amount, payment_intent=pi),
            new_id("evt"),
        )
    ]
    pay_event = out[0].event_id
    refunds: list[dict[str, Any]] = []
    total = 0
    for n, amount in enumerate(s.refunds):
        total += amount
        refunds.insert(
            0,
            stripe_object(
                "refund",
                id=new_id("re"),
                amount=amount,
                charge=ch,
                payment_intent=pi,
                created=1_700_000_000 + n,
            ),
        )
        charge = refunded_charge(pi, amount=PRICE, refunded=total, order_no=order_no, id=ch)
        charge["refunds"] = {
            "object": "list",
            "data": [dict(r) for r in refunds],
            "has_more": False,
            "url": f"/v1/charges/{ch}/refunds",
        }
        out.append(Delivery("charge.refunded", charge, new_id("evt")))
    if s.dispute:
        dp = dispute(pi, charge=ch, amount=PRICE, id=new_id("dp"), metadata=meta)
        out.append(Delivery("charge.dispute.created", dp, new_id("evt")))
        if s.dispute != "open":
            out.append(Delivery("charge.dispute.closed", dict(dp, status=s.dispute), new_id("evt")))
    if s.extra is not None:
        pi2, ch2 = new_id("pi"), new_id("ch")
        # A second payment happens after the first: Stripe may still deliver it late, but
        # never before the first one was made (its delivery may be repeated any time).
        second = Delivery(
            "checkout.session.completed",
            completed_session(order_no, amount=s.extra, currency="eur", payment_intent=pi2),
            new_id("evt"),
            after=pay_event,
        )
        out.append(second)
        if s.extra_refunded:
            # The owner's refund, made after the second charge reached us (the button).
            charge = refunded_charge(
                pi2, amount=s.extra, refunded=s.extra, order_no=order_no, id=ch2, currency="eur"
            )
            charge["refunds"] = {
                "object": "list",
                "has_more": False,
                "url": "/",
                "data": [
                    stripe_object(
                        "refund",
                        id=new_id("re"),
                        amount=s.extra,
                        charge=ch2,
                        payment_intent=pi2,
                        currency="eur",
                    )
                ],
            }
            out.append(Delivery("charge.refunded", charge, new_id("evt"), after=second.event_id))
    return out


def schedule(
    deliveries: list[Delivery], extra_copies: list[tuple[int, bool]], order_keys: list[int]
) -> list[Delivery]:
    """Every delivery, some repeated (same event id, or re-sent under a new id), shuffled by
    `order_keys`, then nudged so an event's `after` comes before it."""
    items = list(deliveries)
    for index, new_event_id in extra_copies:
        d = deliveries[index % len(deliveries)]
        items.append(
            Delivery(d.event_type, d.obj, new_id("evt") if new_event_id else d.event_id, d.after)
        )
    keyed = sorted(
        zip(
            order_keys + [0] * (len(items) - len(order_keys)), range(len(items)), items, strict=True
        ),
        key=lambda t: (t[0], t[1]),
    )
    pending = [d for _, _, d in keyed]
    done: set[str] = set()
    out: list[Delivery] = []
    while pending:
        d = next(d for d in pending if d.after is None or d.after in done)
        pending.remove(d)
        out.append(d)
        done.add(d.event_id)
    return out


async def _shop(db, now):
    n = next(_seq)
    async with db.transaction() as s:
        owner = await get_or_create_user(s, "telegram", f"9{n:06d}", now, username=f"o{n}")
        group, _ = await register_group(s, owner, "telegram", f"-100{n:07d}", f"G{n}", now)
        plan = await add_plan(s, owner, [group], 30, [Money(PRICE, "USD")], "Monthly", now)
    return owner, group, plan


async def _orders(db, plan, stories_: list[Story], now) -> list[Order]:
    orders = []
    async with db.transaction() as s:
        for st_ in stories_:
            n = next(_seq)
            buyer = await get_or_create_user(s, "telegram", f"8{n:06d}", now)
            order = Order(
                order_no=f"GPP{n:07d}",
                user_id=buyer.id,
                plan_id=plan.id,
                provider="stripe",
                amount_minor=PRICE,
                currency="USD",
                status="expired" if st_.expired_first else "pending",
                created_at=now,
            )
            s.add(order)
            orders.append(order)
    return orders


@settings(
    max_examples=45,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), story_list=st.lists(stories(), min_size=1, max_size=3))
async def test_the_ledger_tells_the_story_whatever_the_delivery(db, now, data, story_list):
    provider = StripeProvider(SECRET_KEY, WEBHOOK_SECRET)  # no API calls: events carry order_no
    owner, _group, plan = await _shop(db, now)
    orders = await _orders(db, plan, story_list, now)
    deliveries = [
        d for o, s in zip(orders, story_list, strict=True) for d in story_events(o.order_no, s)
    ]
    copies = data.draw(st.lists(st.tuples(st.integers(0, 50), st.booleans()), max_size=6))
    keys = data.draw(
        st.lists(
            st.integers(0, 1000),
            min_size=len(deliveries) + len(copies),
            max_size=len(deliveries) + len(copies),
        )
    )
    sent_ids: set[str] = set()
    for d in schedule(deliveries, copies, keys):
        headers, body, _ = signed(d.event_type, d.obj, event_id=d.event_id)
        ack, _outcome = await ingest_webhook(db, provider, headers, body, now)
        assert ack.status == 200, (d.event_type, ack.body)
        sent_ids.add(d.event_id)

    order_ids = [o.id for o in orders]
    async with db.session() as s:
        pays = list(
            (await s.execute(select(Payment).where(col(Payment.order_id).in_(order_ids)))).scalars()
        )
        got_orders = {
            o.id: o
            for o in (await s.execute(select(Order).where(col(Order.id).in_(order_ids)))).scalars()
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
                await s.execute(
                    select(WebhookEvent).where(col(WebhookEvent.event_id).in_(sent_ids))
                )
            ).scalars()
        )
        stats = await owner_stats(s, owner.id, now)

    # Every event id once, every one processed.
    assert len(events) == len(sent_ids) and all(e.processed_at for e in events)

    revenue: dict[str, int] = defaultdict(int)
    unexpected: dict[str, int] = defaultdict(int)
    sign = {"charge": 1, "dispute_won": 1, "refund": -1, "dispute": -1}
    for order, story in zip(orders, story_list, strict=True):
        rows = [p for p in pays if p.order_id == order.id]
        own = [p for p in rows if not p.extra]
        extra = [p for p in rows if p.extra]
        right = story.paid_amount == PRICE
        # One row per money movement: no event applied twice.
        want_own = (
            (1 if right else 0)
            + len(story.refunds)
            + (0 if story.dispute is None else 2 if story.dispute == "won" else 1)
        )
        want_extra = (0 if right else 1) + (story.extra is not None) + story.extra_refunded
        assert (len(own), len(extra)) == (want_own, want_extra), (story, rows)
        charges = sum(p.amount_minor for p in own if p.kind == "charge")
        assert charges == (PRICE if right else 0), story
        net = sum(sign[p.kind] * p.amount_minor for p in own)
        kept = (
            0
            if not right
            else PRICE - sum(story.refunds) - (PRICE if story.dispute in ("open", "lost") else 0)
        )
        assert net == kept, (story, rows)
        revenue["USD"] += net
        # Unexpected money: the wrong amount and the second charge, less what went back.
        left = sum(sign[p.kind] * p.amount_minor for p in extra)
        want_left = (0 if right else story.paid_amount) + (
            story.extra if story.extra is not None and not story.extra_refunded else 0
        )
        assert left == want_left, (story, rows)
        for p in extra:
            unexpected[p.currency] += sign[p.kind] * p.amount_minor
        # Access: exactly when the order is paid and not reversed.
        o = got_orders[order.id]
        reversed_ = sum(story.refunds) >= PRICE or story.dispute in ("open", "lost")
        should = right and not reversed_
        m = members.get(order.user_id)
        assert (m is not None and is_active(m, now)) == should, (story, o.status, m)
        if should:
            assert o.status == "paid" and m is not None
            assert m.expires_at == now + timedelta(days=30)  # one period, however often paid
        assert o.status == (
            "failed" if not right else "refunded" if sum(story.refunds) >= PRICE else o.status
        )
        assert o.status in ("paid", "refunded", "failed")

    # /stats equals the ledger to the minor unit.
    assert stats.revenue == [Money(v, c) for c, v in sorted(revenue.items()) if v]
    assert sorted(stats.unexpected, key=lambda m: m.currency) == [
        Money(v, c) for c, v in sorted(unexpected.items()) if v
    ]
    assert stats.renewals == 0
    await provider.close()
