"""Issue 6, end to end: a buyer pays one order twice through Stripe. The second charge is
kept apart (not revenue, not a renewal), the owner is told with a one-tap refund button,
pressing it refunds through Stripe's Refund API, and Stripe's charge.refunded settles the
extra charge without touching the buyer's access."""

from __future__ import annotations

from sqlmodel import col

from storage.models import Membership, Order, Outbox, Payment, WebhookEvent
from tests.e2e.test_buy_with_stripe import session_id
from tests.e2e.world import BUYER, GROUP, OWNER, STRIPE_KEY, World
from tests.stripe_fixtures import second_checkout_session


async def second_session(world: World, order: Order) -> str:
    return await second_checkout_session(
        world.stripe.base_url, STRIPE_KEY, order.order_no, "Monthly access"
    )


async def test_paid_twice_is_flagged_refunded_in_one_tap_and_access_kept(world: World):
    await world.set_up_shop()
    sid = session_id(await world.checkout())
    assert await world.stripe.pay(sid) == 200
    await world.invite_for(BUYER)
    (order,) = await world.rows(Order)

    since = await world.last_id(OWNER)
    assert await world.stripe.pay(await second_session(world, order)) == 200
    notice = await world.tg.wait_for_message(
        OWNER, lambda m: "Paid twice" in (m.text or ""), since=since
    )
    assert order.order_no in notice.text and "4.99 USD" in notice.text
    (extra,) = await world.rows(Payment, col(Payment.extra).is_(True))
    assert (extra.kind, extra.amount_minor, extra.currency) == ("charge", 499, "USD")
    (event,) = [e for e in await world.rows(WebhookEvent) if e.error]
    assert event.error.startswith("unexpected_charge: paid twice")

    stats = await world.ask(OWNER, "/stats", match=lambda m: "Revenue" in (m.text or ""))
    assert "4.99 USD all time" in stats.text  # the order's money only
    assert "Unexpected charges to refund" in stats.text and ": 1 charge, 4.99 USD" in stats.text
    assert "0 renewals in the last 30 days" in stats.text

    done = await world.press(OWNER, notice, "xrf:", match=lambda m: "requested" in (m.text or ""))
    assert order.order_no in done.text
    refunded = await world.wait_text(OWNER, "Refunded: the extra 4.99 USD", since=done.message_id)
    assert order.order_no in refunded.text
    (call,) = [r for r in world.stripe.requests if r.path == "/v1/refunds"]
    charge = world.stripe.charges[
        next(iter(world.stripe.charges.keys() - {world.stripe._checkouts[sid].charge_id}))
    ]
    assert call.params["payment_intent"] == charge["payment_intent"] == extra.provider_payment_id
    assert call.headers["Idempotency-Key"].startswith("gatepass-refund-")
    assert charge["refunded"] is True

    async def settled() -> bool:
        return (
            len(
                await world.rows(
                    Payment, col(Payment.kind) == "refund", col(Payment.extra).is_(True)
                )
            )
            == 1
        )

    await world.eventually(settled)
    (m,) = await world.rows(Membership)
    assert m.status == "active"  # the order's own access is untouched
    assert await world.tg.member_status(GROUP, BUYER) != "kicked"
    (order,) = await world.rows(Order)
    assert order.status == "paid"
    stats = await world.ask(OWNER, "/stats", match=lambda m: "Revenue" in (m.text or ""))
    assert "Unexpected" not in stats.text and "4.99 USD all time" in stats.text

    # A second tap refunds nothing more.
    again = await world.press(
        OWNER, notice, "xrf:", match=lambda m: "refunded already" in (m.text or "")
    )
    assert again.text
    assert len([r for r in world.stripe.requests if r.path == "/v1/refunds"]) == 1
    assert await world.count(Outbox, col(Outbox.kind) == "refund_payment") == 1
