"""The owner's `/refund <order>`, end to end: a buyer pays through Stripe and joins, the owner
refunds the order from the chat, Stripe's Refund API is called once (with an idempotency
key), Stripe's charge.refunded settles it, and the owner's refund policy ends or keeps the
buyer's access; the buyer and the owner are told. Retries, refusals, a second request,
someone else's request and bad arguments are each reported and change nothing."""

from __future__ import annotations

from sqlmodel import col

from storage.models import Membership, Order, Outbox
from tests.e2e.test_lifecycle import buy_and_join
from tests.e2e.world import BOT_ID, BUYER, GROUP, OWNER, STRANGER, World

OTHER_GROUP = -1005678


def refund_calls(world: World) -> list[str]:
    """The Idempotency-Key of every Refund API call Stripe executed."""
    return [r.headers["Idempotency-Key"] for r in world.stripe.requests if r.path == "/v1/refunds"]


def has(text: str):
    return lambda m: text in (m.text or "")


async def refund(world: World, who: int, args: str, expect: str):
    return await world.ask(who, f"/refund {args}".strip(), match=has(expect))


async def test_owner_refunds_an_order_buyer_removed_and_both_told(world: World):
    sid = await buy_and_join(world)
    (order,) = await world.rows(Order)
    no = order.order_no

    # Bad arguments: a reason and the usage, nothing changed.
    for args, reason in [
        ("", "Some arguments are missing."),
        (f"{no} now", "Too many arguments: 'now'."),
        ("#12!", "'#12!' is not an order number"),
    ]:
        reply = await refund(world, OWNER, args, "Usage: /refund <order>")
        assert reason in reply.text
    # Another owner (of a group of their own) and someone who owns nothing: the order is
    # unknown to them, as an order that does not exist is.
    await world.tg.create_chat(OTHER_GROUP, creator_id=STRANGER, title="Other Club")
    await world.tg.promote(
        OTHER_GROUP,
        BOT_ID,
        {"can_invite_users": True, "can_restrict_members": True, "can_manage_chat": True},
        by=STRANGER,
    )
    await world.ask(STRANGER, "/setup", chat=OTHER_GROUP, match=has("group #"))
    for who, args in [(STRANGER, no), (BUYER, no), (OWNER, "GPNOSUCHORDR")]:
        reply = await refund(world, who, args, "of your plans")
        assert reply.text.startswith(f"There is no order {args} of your plans.")
    # In the group, the command is for the private chat.
    await world.ask(OWNER, f"/refund {no}", chat=GROUP, match=has("private chat"))
    assert refund_calls(world) == [] and await world.count(Outbox, _refunds()) == 0

    since_buyer = await world.last_id(BUYER)
    asked = await refund(world, OWNER, no.lower(), "requested")
    assert asked.text == (
        f"Refund of 4.99 USD for order {no} requested; you will be told when it is done."
    )
    done = await world.wait_text(OWNER, f"Refund: 4.99 USD of order {no}", since=asked.message_id)
    assert "bought by @bob" in done.text
    await world.wait_status(GROUP, BUYER, "left")
    told = await world.wait_text(BUYER, "was refunded", since=since_buyer)
    assert told.text == (
        f"Your payment of 4.99 USD for Monthly access (order {no}) was refunded, so your "
        "access to Traders Club has ended and you were removed."
    )
    assert refund_calls(world) == [f"gatepass-refund-order-stripe-{no}-1"]
    charge = world.stripe.charges[world.stripe._checkouts[sid].charge_id]
    assert (charge["amount_refunded"], charge["refunded"]) == (499, True)
    (m,) = await world.rows(Membership)
    (order,) = await world.rows(Order)
    assert (m.status, order.status) == ("revoked", "refunded")

    # Asked again: reported; Stripe is not called again.
    again = await refund(world, OWNER, no, "refunded already")
    assert again.text == f"Order {no} has been refunded already (4.99 USD)."
    assert len(refund_calls(world)) == 1 and await world.count(Outbox, _refunds()) == 1
    # Each party heard once.
    buyer_texts = [m.text or "" for m in await world.tg.sent_messages(BUYER, since=since_buyer)]
    assert sum("was refunded" in t for t in buyer_texts) == 1
    owner_texts = [m.text or "" for m in await world.tg.sent_messages(OWNER)]
    assert sum(t.startswith(f"Refund: 4.99 USD of order {no}") for t in owner_texts) == 1


async def test_policy_keep_leaves_the_buyer_in_the_group(world: World):
    await world.set_up_shop()
    await world.ask(OWNER, "/refundpolicy keep", match=has("policy: keep"))
    sid_url = await world.checkout()
    assert await world.stripe.pay(sid_url.rstrip("/").rsplit("/", 1)[1]) == 200
    link = await world.invite_for(BUYER)
    assert await world.tg.join_by_link(BUYER, link) == "requested"
    await world.wait_status(GROUP, BUYER, "member")
    (order,) = await world.rows(Order)

    since_buyer = await world.last_id(BUYER)
    asked = await refund(world, OWNER, order.order_no, "requested")
    await world.wait_text(
        OWNER, f"Refund: 4.99 USD of order {order.order_no}", since=asked.message_id
    )
    told = await world.wait_text(BUYER, "was refunded", since=since_buyer)
    assert "Your access to Traders Club stays until its end date and will not renew." in told.text

    async def refunded() -> bool:
        (o,) = await world.rows(Order)
        return o.status == "refunded"

    await world.eventually(refunded)
    assert await world.tg.member_status(GROUP, BUYER) == "member"
    (m,) = await world.rows(Membership)
    assert (m.status, m.auto_renew) == ("active", False)
    assert len(refund_calls(world)) == 1


async def test_a_transient_500_is_retried_and_refunds_once(world: World):
    await buy_and_join(world)
    (order,) = await world.rows(Order)
    world.stripe.fail_status, world.stripe.fail_next = 500, 1
    asked = await refund(world, OWNER, order.order_no, "requested")
    # A second /refund while the first waits for its retry: already requested.
    again = await refund(world, OWNER, order.order_no, "requested already")
    assert again.text.startswith(f"A refund of order {order.order_no} was requested already")
    await world.wait_text(
        OWNER, f"Refund: 4.99 USD of order {order.order_no}", since=asked.message_id, timeout=15
    )
    await world.wait_status(GROUP, BUYER, "left")
    assert world.stripe.fail_next == 0  # the 500 was answered
    assert refund_calls(world) == [f"gatepass-refund-order-stripe-{order.order_no}-1"]
    (row,) = await world.rows(Outbox, _refunds())
    assert (row.status, row.attempts) == ("done", 2)  # the outbox tried again after the 500
    assert len(world.stripe.refunds) == 1


async def test_a_refusal_is_told_and_a_later_refund_asks_again(world: World):
    sid = await buy_and_join(world)
    (order,) = await world.rows(Order)
    no = order.order_no
    # The buyer's bank disputes the charge; its webhook has not reached us yet.
    url, world.stripe.webhook_url = world.stripe.webhook_url, None
    await world.stripe.dispute(sid)
    world.stripe.webhook_url = url

    asked = await refund(world, OWNER, no, "requested")
    refused = await world.wait_text(OWNER, "was refused", since=asked.message_id)
    assert refused.text.startswith(f"The refund of 4.99 USD (order {no}) was refused: ")
    assert "charged back" in refused.text
    (row,) = await world.rows(Outbox, _refunds())
    assert row.status == "failed"
    assert await world.tg.member_status(GROUP, BUYER) == "member"

    # The bank decides for the seller; the owner asks again and this time it goes through.
    assert await world.stripe.close_dispute(sid, "won") == 200
    await world.wait_text(OWNER, "Dispute won", since=refused.message_id)
    again = await refund(world, OWNER, no, "requested")
    assert again.text.startswith("Refund of 4.99 USD")
    await world.wait_text(OWNER, f"Refund: 4.99 USD of order {no}", since=again.message_id)
    await world.wait_status(GROUP, BUYER, "left")
    assert refund_calls(world) == [
        f"gatepass-refund-order-stripe-{no}-1",
        f"gatepass-refund-order-stripe-{no}-2",
    ]
    assert len(world.stripe.refunds) == 1


async def test_refunding_a_subscription_stops_it_renewing_at_stripe(world: World):
    sid = await buy_and_join(world, "1m 9.99USD Monthly", sub=True)
    sub_id = world.stripe.sessions[sid]["subscription"]
    (order,) = await world.rows(Order)
    asked = await refund(world, OWNER, order.order_no, "requested")
    assert asked.text.startswith(f"Refund of 9.99 USD for order {order.order_no} requested")
    await world.wait_status(GROUP, BUYER, "left")
    (call,) = [r for r in world.stripe.requests if r.path == "/v1/refunds"]
    # The order's payment is its first invoice: refunded through the invoice's payment intent.
    invoice = world.stripe.sessions[sid]["invoice"]
    (paid,) = [p for p in world.stripe.invoice_payments.values() if p["invoice"] == invoice]
    assert call.params["payment_intent"] == paid["payment"]["payment_intent"]

    async def stopped() -> bool:
        return world.stripe.subscriptions[sub_id]["cancel_at_period_end"] is True

    await world.eventually(stopped)  # no more charges for access refunded and revoked
    (m,) = await world.rows(Membership)
    assert (m.status, m.auto_renew) == ("revoked", False)


def _refunds():
    return col(Outbox.kind) == "refund_payment"
