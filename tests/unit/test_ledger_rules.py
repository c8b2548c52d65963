"""Issue 6 ledger rules through billing.ingest with real signed Stripe events (and the
local Stripe host for the refund calls): unexpected charges, payments on failed orders,
the one-tap refund through the outbox, and disputes closed won or lost."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from billing.payments import Outcome, Result
from billing.providers.stripe_provider import StripeProvider
from billing.refunds import request_extra_refund
from membership.errors import RuleError
from membership.reports import owner_stats
from scheduler.outbox import OutboxWorker
from storage.models import AuditLog, Membership, Order, Outbox, Payment, User, WebhookEvent
from storage.outbox import ClaimedRow
from storage.queries import get_or_create_user
from tests.factories import (
    MovableClock,
    deliver_stripe_event,
    make_order,
    make_shop,
    start_order,
    stripe_events,
)
from tests.stripe_fixtures import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    completed_session,
    dispute,
    paid_invoice,
    refunded_charge,
    second_checkout_session,
)
from tests.unit.test_stripe_lifecycle import send, ts

# `fake` (the local Stripe host, no webhook_url) and `stripe`: tests/unit/conftest.py


async def rows(db, model, *where):
    async with db.session() as s:
        return list((await s.execute(select(model).where(*where).order_by(model.id))).scalars())


def notes(outbox: list[Outbox]) -> list[str]:
    return [r.payload["key"] for r in outbox if r.kind == "notify"]


async def paid_order(db, stripe, now, **shop):
    made = await make_shop(db, now, **shop)
    order = await make_order(db, made, now, provider="stripe")
    session = completed_session(order.order_no, amount=order.amount_minor)
    assert await send(db, stripe, "checkout.session.completed", session, now) == "granted"
    return made, order, session["payment_intent"]


def test_result_is_typed_and_says_whether_it_is_fine():
    assert Result(Outcome.GRANTED).ok and Result(Outcome.GRANTED).error is None
    bad = Result(Outcome.UNEXPECTED_CHARGE, "paid twice: 4.99 USD")
    assert not bad.ok and bad.error == "unexpected_charge: paid twice: 4.99 USD"
    assert Result(Outcome.ORDER_FAILED).error == "order_failed"
    assert str(Result(Outcome.DUPLICATE)) == "duplicate"


# -- money the order did not expect ------------------------------------------------------------


async def test_second_payment_of_a_paid_order_is_an_extra_charge_not_revenue(db, stripe, now):
    shop, order, _pi = await paid_order(db, stripe, now)
    # Another session paid for the same order, in another currency and amount.
    second = completed_session(order.order_no, amount=1250, currency="eur")
    assert await send(db, stripe, "checkout.session.completed", second, now) == "unexpected_charge"
    # The same money seen again (Stripe resends under a new event id): nothing more.
    assert await send(db, stripe, "checkout.session.completed", second, now) == "already_paid"
    (extra,) = await rows(db, Payment, col(Payment.extra).is_(True))
    assert (extra.kind, extra.amount_minor, extra.currency, extra.provider_payment_id) == (
        "charge",
        1250,
        "EUR",
        second["payment_intent"],
    )
    outbox = await rows(db, Outbox)
    (note,) = [r for r in outbox if r.kind == "notify" and r.payload["key"] == "owner_extra_twice"]
    assert note.payload["user_id"] == shop.owner.platform_user_id
    assert note.payload["params"]["amount"] == "12.50 EUR"
    assert note.payload["buttons"] == [
        {
            "text_key": "btn_refund_extra",
            "params": {"amount": "12.50 EUR"},
            "callback_data": f"xrf:{extra.id}",
        }
    ]
    (m,) = await rows(db, Membership)
    assert m.expires_at == now + timedelta(days=30)  # no second period
    errors = [e.error for e in await rows(db, WebhookEvent) if e.error]
    assert errors == [
        (
            f"unexpected_charge: paid twice: 12.50 EUR on paid order {order.order_no}, "
            f"payment {second['payment_intent']}"
        )
    ]
    async with db.session() as s:
        stats = await owner_stats(s, shop.owner.id, now)
    assert [str(m) for m in stats.revenue] == ["4.99 USD"]
    assert (stats.renewals, stats.unexpected_count) == (0, 1)
    assert [str(m) for m in stats.unexpected] == ["12.50 EUR"]


async def test_payment_after_a_failed_attempt_is_never_fine(db, stripe, now):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now, provider="stripe")
    session = completed_session(order.order_no, amount=499, payment_status="unpaid")
    assert (
        await send(db, stripe, "checkout.session.async_payment_failed", session, now) == "notified"
    )
    # The buyer pays the order anyway (another session): money arrived, no access.
    late = completed_session(order.order_no, amount=499)
    assert await send(db, stripe, "checkout.session.completed", late, now) == "unexpected_charge"
    assert await rows(db, Membership) == []
    (o,) = await rows(db, Order)
    assert o.status == "failed"
    assert "owner_extra_after_failure" in notes(await rows(db, Outbox))
    (ev,) = await rows(
        db, WebhookEvent, col(WebhookEvent.event_type) == "checkout.session.completed"
    )
    assert ev.error.startswith("unexpected_charge: paid after a failed attempt")


async def test_renewal_of_a_failed_order_is_flagged_to_the_owner(db, stripe, now):
    shop = await make_shop(db, now, recurring=True)
    order = await make_order(db, shop, now, provider="stripe")
    first = paid_invoice(
        order.order_no, "sub_1Failed", amount=100, billing_reason="subscription_create"
    )
    assert await send(db, stripe, "invoice.paid", first, now) == "mismatch"
    # The same invoice again: still not fine, and the owner is not told twice.
    assert await send(db, stripe, "invoice.paid", first, now) == "mismatch"
    renewal = paid_invoice(
        order.order_no,
        "sub_1Failed",
        amount=499,
        period_end=ts(now + timedelta(days=60)),
        billing_reason="subscription_cycle",
    )
    assert await send(db, stripe, "invoice.paid", renewal, now) == "unexpected_charge"
    assert await rows(db, Membership) == []
    outbox = await rows(db, Outbox)
    keys = notes(outbox)
    assert keys.count("owner_payment_mismatch") == 1
    assert keys.count("owner_extra_after_failure") == 1
    # The subscription would go on charging for access never given: Stripe is told to stop.
    assert [r.payload for r in outbox if r.kind == "stop_renewal"] == [
        {
            "provider": "stripe",
            "subscription_id": "sub_1Failed",
            "buyer_ref": shop.buyer.platform_user_id,
        }
    ]
    errors = [e.error for e in await rows(db, WebhookEvent)]
    assert all(e and not e.startswith(("granted", "already")) for e in errors)
    extras = await rows(db, Payment, col(Payment.extra).is_(True))
    assert sorted(p.amount_minor for p in extras) == [100, 499]
    async with db.session() as s:
        stats = await owner_stats(s, shop.owner.id, now)
    assert stats.revenue == [] and stats.renewals == 0 and stats.unexpected_count == 2


# -- the one-tap refund ------------------------------------------------------------------------


class NoChats:
    platform = "telegram"


async def run_refunds(db, provider, now) -> list[Outbox]:
    worker = OutboxWorker(
        db,
        {"telegram": NoChats()},
        MovableClock(now),
        invite_ttl=timedelta(hours=1),
        providers={"stripe": provider},
    )
    for row in await rows(
        db, Outbox, col(Outbox.kind) == "refund_payment", col(Outbox.status) == "pending"
    ):
        await worker._process(ClaimedRow(row.id, row.kind, row.platform, row.payload, row.attempts))
    return await rows(db, Outbox, col(Outbox.kind) == "refund_payment")


async def second_session(fake, order) -> str:
    return await second_checkout_session(fake.base_url, SECRET_KEY, order.order_no, "Monthly")


async def pay_twice_at_the_host(db, fake, stripe, now):
    """An order paid, then paid again, both through the local Stripe host."""
    shop = await make_shop(db, now)
    order = await start_order(db, stripe, shop, now)
    await fake.pay(order.provider_ref)
    (paid,) = stripe_events(fake, "checkout.session.completed")
    assert await deliver_stripe_event(db, stripe, paid, now) == "granted"
    s2 = await second_session(fake, order)
    await fake.pay(s2)
    second = stripe_events(fake, "checkout.session.completed")[-1]
    assert await deliver_stripe_event(db, stripe, second, now) == "unexpected_charge"
    (extra,) = await rows(db, Payment, col(Payment.extra).is_(True))
    return shop, order, extra, fake.sessions[s2]


async def test_only_the_plans_owner_may_refund_and_only_once(db, fake, stripe, now):
    shop, order, extra, _ = await pay_twice_at_the_host(db, fake, stripe, now)
    (own,) = await rows(db, Payment, col(Payment.extra).is_(False))
    async with db.transaction() as s:
        stranger = await get_or_create_user(s, "telegram", "555", now)
    for who, payment_id, key in [
        (stranger, extra.id, "refund_not_yours"),
        (shop.buyer, extra.id, "refund_not_yours"),
        (shop.owner, own.id, "refund_not_extra"),
        (shop.owner, 99999, "refund_not_extra"),
    ]:
        async with db.transaction() as s:
            user = await s.get(User, who.id)
            with pytest.raises(RuleError) as e:
                await request_extra_refund(s, user, payment_id, now, refundable={"stripe"})
        assert e.value.key == key
    async with db.transaction() as s:
        owner = await s.get(User, shop.owner.id)
        with pytest.raises(RuleError) as e:
            await request_extra_refund(s, owner, extra.id, now, refundable=set())
    assert e.value.key == "refund_by_hand"
    assert await rows(db, Outbox, col(Outbox.kind) == "refund_payment") == []
    for attempt in range(2):
        async with db.transaction() as s:
            owner = await s.get(User, shop.owner.id)
            if attempt == 0:
                asked = await request_extra_refund(s, owner, extra.id, now, refundable={"stripe"})
                assert (asked.order_no, str(asked.money)) == (order.order_no, "4.99 USD")
            else:
                with pytest.raises(RuleError) as e:
                    await request_extra_refund(s, owner, extra.id, now, refundable={"stripe"})
                assert e.value.key == "refund_already_requested"
    assert len(await rows(db, Outbox, col(Outbox.kind) == "refund_payment")) == 1


async def test_refund_is_retried_on_5xx_and_network_errors_and_refunds_once(db, fake, stripe, now):
    shop, _order, extra, s2 = await pay_twice_at_the_host(db, fake, stripe, now)
    async with db.transaction() as s:
        owner = await s.get(User, shop.owner.id)
        await request_extra_refund(s, owner, extra.id, now, refundable={"stripe"})
    # Stripe unreachable: the row waits for another try.
    down = StripeProvider(SECRET_KEY, WEBHOOK_SECRET, api_base="http://127.0.0.1:9")
    try:
        (row,) = await run_refunds(db, down, now)
    finally:
        await down.close()
    assert row.status == "pending" and "cannot reach the Stripe API" in row.last_error
    # Stripe answers 503 (more often than the SDK's own retries): still waiting.
    fake.fail_next = 10
    (row,) = await run_refunds(db, stripe, now)
    assert row.status == "pending" and "HTTP 503" in row.last_error
    assert not fake.refunds
    fake.fail_next = 0
    (row,) = await run_refunds(db, stripe, now)
    assert row.status == "done"
    charge = fake.charges[fake._checkouts[s2["id"]].charge_id]
    assert (charge["amount_refunded"], charge["refunded"]) == (499, True)
    # Run again (a lease ran out after the call): the same idempotency key, no second refund.
    async with db.transaction() as s:
        await s.execute(update(Outbox).values(status="pending"))
    (row,) = await run_refunds(db, stripe, now)
    assert row.status == "done" and len(fake.refunds) == 1
    keys = {r.headers.get("Idempotency-Key") for r in fake.requests if r.path == "/v1/refunds"}
    assert keys == {f"gatepass-refund-stripe-{extra.provider_payment_id}"}


async def test_refund_webhook_settles_the_extra_charge_and_keeps_access(db, fake, stripe, now):
    shop, _order, extra, _ = await pay_twice_at_the_host(db, fake, stripe, now)
    async with db.transaction() as s:
        owner = await s.get(User, shop.owner.id)
        await request_extra_refund(s, owner, extra.id, now, refundable={"stripe"})
    await run_refunds(db, stripe, now)
    await fake.settle()
    (refunded,) = stripe_events(fake, "charge.refunded")
    assert await deliver_stripe_event(db, stripe, refunded, now) == "extra_settled"
    assert await deliver_stripe_event(db, stripe, refunded, now) == "duplicate"
    (m,) = await rows(db, Membership)
    assert m.status == "active"
    (o,) = await rows(db, Order)
    assert o.status == "paid"
    (back,) = await rows(db, Payment, col(Payment.kind) == "refund")
    assert (back.extra, back.amount_minor, back.reverses) == (True, 499, extra.provider_payment_id)
    assert "owner_extra_refund" in notes(await rows(db, Outbox))
    assert "remove_member" not in [r.kind for r in await rows(db, Outbox)]
    async with db.session() as s:
        stats = await owner_stats(s, shop.owner.id, now)
    assert [str(x) for x in stats.revenue] == ["4.99 USD"] and stats.unexpected_count == 0
    async with db.transaction() as s:
        owner = await s.get(User, shop.owner.id)
        with pytest.raises(RuleError) as e:
            await request_extra_refund(s, owner, extra.id, now, refundable={"stripe"})
    assert e.value.key == "refund_already_done"


async def test_a_refused_refund_is_told_to_the_owner_who_may_ask_again(db, fake, stripe, now):
    shop, _order, extra, s2 = await pay_twice_at_the_host(db, fake, stripe, now)
    await fake.dispute(s2["id"])  # the bank took it back first: Stripe refuses the refund
    async with db.transaction() as s:
        owner = await s.get(User, shop.owner.id)
        await request_extra_refund(s, owner, extra.id, now, refundable={"stripe"})
    (row,) = await run_refunds(db, stripe, now)
    assert row.status == "failed" and "charged back" in row.last_error
    (note,) = [
        r
        for r in await rows(db, Outbox)
        if r.kind == "notify" and r.payload["key"] == "owner_refund_failed"
    ]
    assert note.payload["user_id"] == shop.owner.platform_user_id
    (again,) = await rows(db, Payment, col(Payment.id) == extra.id)
    assert again.refund_requested_at is None


# -- disputes closed ---------------------------------------------------------------------------


async def test_dispute_won_brings_access_back_and_reverses_the_ledger(db, stripe, now):
    shop, _order, pi = await paid_order(db, stripe, now)
    dp = dispute(pi, amount=499)
    assert await send(db, stripe, "charge.dispute.created", dp, now) == "revoked"
    later = now + timedelta(days=3)
    won = dict(dp, status="won")
    assert await send(db, stripe, "charge.dispute.closed", won, later) == "dispute_won"
    assert await send(db, stripe, "charge.dispute.closed", won, later) == "already_recorded"
    (m,) = await rows(db, Membership)
    assert m.status == "active" and m.expires_at == now + timedelta(days=30)
    outbox = await rows(db, Outbox)
    assert [r.payload["membership_id"] for r in outbox if r.kind == "deliver_invite"] == [m.id] * 2
    assert notes(outbox).count("owner_dispute_won_restored") == 1
    kinds = sorted((p.kind, p.amount_minor) for p in await rows(db, Payment))
    assert kinds == [("charge", 499), ("dispute", 499), ("dispute_won", 499)]
    async with db.session() as s:
        stats = await owner_stats(s, shop.owner.id, later)
    assert [str(x) for x in stats.revenue] == ["4.99 USD"]
    assert "membership.restore" in [a.action for a in await rows(db, AuditLog)]


async def test_dispute_lost_keeps_access_revoked(db, stripe, now):
    shop, _order, pi = await paid_order(db, stripe, now)
    dp = dispute(pi, amount=499)
    await send(db, stripe, "charge.dispute.created", dp, now)
    assert (
        await send(db, stripe, "charge.dispute.closed", dict(dp, status="lost"), now)
        == "dispute_lost"
    )
    (m,) = await rows(db, Membership)
    assert m.status == "revoked"
    assert "owner_dispute_lost" in notes(await rows(db, Outbox))
    async with db.session() as s:
        stats = await owner_stats(s, shop.owner.id, now)
    assert stats.revenue == []


@pytest.mark.parametrize("ended", ["owner_revoked", "refunded", "expired"])
async def test_dispute_won_does_not_undo_an_end_that_came_otherwise(db, stripe, now, ended):
    from bot.commands import parse_revoke_args
    from membership.admin import revoke_access
    from storage.models import ChatGroup

    shop, order, pi = await paid_order(db, stripe, now)
    dp = dispute(pi, amount=499)
    when = now
    if ended == "owner_revoked":
        async with db.transaction() as s:
            owner = await s.get(User, shop.owner.id)
            group = await s.get(ChatGroup, shop.group.id)
            await revoke_access(s, owner, group, parse_revoke_args(f"@buyer {group.id}").user, now)
        await send(db, stripe, "charge.dispute.created", dp, now)
    elif ended == "refunded":
        await send(db, stripe, "charge.dispute.created", dp, now)
        charge = refunded_charge(pi, amount=499, refunded=499, order_no=order.order_no)
        await send(db, stripe, "charge.refunded", charge, now)
    else:
        await send(db, stripe, "charge.dispute.created", dp, now)
        when = now + timedelta(days=40)  # its paid time ran out meanwhile
    assert (
        await send(db, stripe, "charge.dispute.closed", dict(dp, status="won"), when)
        == "dispute_won"
    )
    (m,) = await rows(db, Membership)
    assert m.status == "revoked"
    assert "owner_dispute_won" in notes(await rows(db, Outbox))


async def test_dispute_closed_before_it_opened_never_takes_access(db, stripe, now):
    _shop, _order, pi = await paid_order(db, stripe, now)
    dp = dispute(pi, amount=499)
    assert (
        await send(db, stripe, "charge.dispute.closed", dict(dp, status="won"), now)
        == "dispute_won"
    )
    assert await send(db, stripe, "charge.dispute.created", dp, now) == "already_recorded"
    (m,) = await rows(db, Membership)
    assert m.status == "active"
    assert "remove_member" not in [r.kind for r in await rows(db, Outbox)]
    kinds = sorted(p.kind for p in await rows(db, Payment))
    assert kinds == ["charge", "dispute", "dispute_won"]


async def test_dispute_lost_before_it_opened_ends_access(db, stripe, now):
    _shop, _order, pi = await paid_order(db, stripe, now)
    dp = dispute(pi, amount=499)
    assert (
        await send(db, stripe, "charge.dispute.closed", dict(dp, status="lost"), now)
        == "dispute_lost"
    )
    assert await send(db, stripe, "charge.dispute.created", dp, now) == "already_recorded"
    (m,) = await rows(db, Membership)
    assert m.status == "revoked"
