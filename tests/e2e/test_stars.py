"""Telegram Stars end to end: the real service and the Bot API emulator, the buyer paying in
the chat (XTR), through the same ledger path as Stripe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import col

from billing.reconcile import reconcile_pending
from bot.i18n import t
from storage.models import (
    Membership,
    Order,
    Outbox,
    Payment,
    TelegramUpdate,
    WebhookEvent,
)
from storage.queries import enqueue
from tests.e2e.world import BUYER, GROUP, OWNER, STRANGER, World

ZH_BUYER = 4004
DAY = 24 * 3600


async def stars_shop(world: World, plan: str = "30d 250XTR Monthly access") -> int:
    return await world.set_up_shop(plan)


async def stars_invoice(world: World, buyer: int = BUYER):
    """The buyer picks the plan and Telegram Stars: the bot sends an invoice."""
    groups = await world.ask(buyer, "/start", match=lambda m: bool(m.callback_data))
    plans = await world.press(buyer, groups, "grp:", match=lambda m: bool(m.callback_data))
    methods = await world.press(buyer, plans, "pln:", match=lambda m: bool(m.callback_data))
    return await world.press(
        buyer, methods, "pay:", match=lambda m: m.invoice is not None, suffix=":stars:XTR"
    )


async def sub_shop(world: World, args: str = "30d 250XTR Stars monthly") -> int:
    """The owner registers the group and adds a Stars subscription plan."""
    reply = await world.ask(
        OWNER, "/setup", chat=GROUP, match=lambda m: "group #" in (m.text or "")
    )
    group_no = int((reply.text or "").split("group #")[1].split()[0].strip("(),"))
    await world.ask(OWNER, f"/addsub {group_no} {args}", match=lambda m: "Plan #" in (m.text or ""))
    return group_no


async def stars_link(world: World, buyer: int = BUYER) -> str:
    """The buyer picks a Stars subscription: the bot shows the invoice link as a button."""
    groups = await world.ask(buyer, "/start", match=lambda m: bool(m.callback_data))
    plans = await world.press(buyer, groups, "grp:", match=lambda m: bool(m.callback_data))
    methods = await world.press(buyer, plans, "pln:", match=lambda m: bool(m.callback_data))
    pay = await world.press(
        buyer, methods, "pay:", match=lambda m: bool(m.button_urls), suffix=":stars:XTR"
    )
    return pay.button_urls[0]


async def settled(world: World) -> None:
    """Every update the bot was sent is applied (confirmed)."""

    async def done() -> bool:
        return await world.tg.pending_updates() == 0

    await world.eventually(done)


async def charges(world: World) -> list[Payment]:
    return await world.rows(Payment, col(Payment.kind) == "charge")


async def net(world: World) -> int:
    """Charges minus refunds, over every order."""
    rows = await world.rows(Payment)
    return sum(p.amount_minor for p in rows if p.kind == "charge") - sum(
        p.amount_minor for p in rows if p.kind == "refund"
    )


async def join(world: World, buyer: int = BUYER) -> None:
    link = await world.invite_for(buyer)
    assert await world.tg.join_by_link(buyer, link) == "requested"
    await world.wait_status(GROUP, buyer, "member")


# -- one-time purchase -------------------------------------------------------------------------


async def test_stars_purchase_ends_with_the_invite_and_joining(world: World):
    await stars_shop(world)
    invoice = await stars_invoice(world)
    (order,) = await world.rows(Order)
    assert invoice.invoice["currency"] == "XTR"
    assert invoice.invoice["total_amount"] == 250
    assert invoice.invoice["payload"] == order.order_no
    assert invoice.invoice["provider_token"] == ""
    assert (order.provider, order.status, order.checkout_url) == ("stars", "pending", None)
    await world.wait_text(BUYER, "Pay the invoice above with Telegram Stars")

    paid = await world.tg.pay_invoice(BUYER, invoice.message_id)
    assert paid["status"] == "paid", paid
    await join(world)
    (order,) = await world.rows(Order)
    assert order.status == "paid"
    (charge,) = await charges(world)
    assert (charge.provider, charge.provider_payment_id, charge.amount_minor, charge.currency) == (
        "stars",
        paid["telegram_payment_charge_id"],
        250,
        "XTR",
    )
    (event,) = await world.rows(WebhookEvent)
    assert (event.provider, event.event_id, event.error) == (
        "stars",
        paid["telegram_payment_charge_id"],
        None,
    )
    (m,) = await world.rows(Membership)
    assert m.status == "active"


# -- pre-checkout ------------------------------------------------------------------------------


async def test_pre_checkout_refusals_are_in_the_buyers_language_and_grant_nothing(world: World):
    await world.tg.create_user(ZH_BUYER, "Li", username="li", language_code="zh")
    await world.tg.send_text(ZH_BUYER, "/help")
    await stars_shop(world)

    # The order's price changed after the invoice went out: the amounts differ.
    invoice = await stars_invoice(world)
    async with world.db.transaction() as s:
        await s.execute(update(Order).values(amount_minor=300))
    refused = await world.tg.pay_invoice(BUYER, invoice.message_id)
    assert refused["status"] == "declined"
    assert refused["error_message"] == t("stars_amount_changed", "en")

    # Paid once; the same invoice again finds the order no longer pending (in Chinese).
    zh_invoice = await stars_invoice(world, ZH_BUYER)
    assert (await world.tg.pay_invoice(ZH_BUYER, zh_invoice.message_id))["status"] == "paid"
    await world.invite_for(ZH_BUYER)
    again = await world.tg.pay_invoice(ZH_BUYER, zh_invoice.message_id)
    assert again["status"] == "declined"
    assert again["error_message"] == t("stars_order_not_pending", "zh")
    assert "订单" in again["error_message"]


async def test_pre_checkout_refuses_someone_elses_order(world: World):
    await world.tg.create_user(ZH_BUYER, "Li", username="li", language_code="zh")
    await world.tg.send_text(ZH_BUYER, "/help")
    await sub_shop(world)
    link = await stars_link(world)
    # An invoice link can be opened by anyone: Li opens Bob's.
    refused = await world.tg.pay_invoice_link(ZH_BUYER, link)
    assert refused["status"] == "declined"
    assert refused["error_message"] == t("stars_order_not_yours", "zh")
    await settled(world)
    assert await world.rows(Payment) == []
    assert await world.rows(Membership) == []
    assert await world.tg.star_subscriptions() == []


# -- exactly once ------------------------------------------------------------------------------


async def test_a_duplicated_successful_payment_grants_once(world: World):
    await stars_shop(world)
    invoice = await stars_invoice(world)
    paid = await world.tg.pay_invoice(BUYER, invoice.message_id)
    charge_id = paid["telegram_payment_charge_id"]
    await world.invite_for(BUYER)
    await settled(world)
    invites_before = await world.count(Outbox, col(Outbox.kind) == "deliver_invite")
    updates_before = await world.count(TelegramUpdate)

    # The same update again (Telegram's confirmation was lost), then a new update carrying
    # the same charge.
    again = await world.tg.redeliver_update()
    assert again["message"]["successful_payment"]["telegram_payment_charge_id"] == charge_id
    await world.tg.resend_payment(charge_id)
    await settled(world)

    async def both_seen() -> bool:
        return await world.count(TelegramUpdate) == updates_before + 1

    await world.eventually(both_seen)  # the redelivered one was a no-op, the new one applied
    (charge,) = await charges(world)
    assert charge.provider_payment_id == charge_id
    assert await world.count(Outbox, col(Outbox.kind) == "deliver_invite") == invites_before
    assert len(await world.rows(Membership)) == 1
    assert await world.count(WebhookEvent) == 1
    (order,) = await world.rows(Order)
    assert order.status == "paid"


# -- subscriptions -----------------------------------------------------------------------------


def aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def subscribe(world: World) -> dict:
    await sub_shop(world)
    link = await stars_link(world)
    assert link.startswith("https://t.me/$")
    (call,) = await world.tg.calls("createInvoiceLink")
    assert call["params"]["subscription_period"] == "2592000"
    assert call["params"]["currency"] == "XTR"
    paid = await world.tg.pay_invoice_link(BUYER, link)
    assert paid["status"] == "paid", paid
    assert paid["is_recurring"] and paid["is_first_recurring"]
    await join(world)
    return paid


async def test_stars_subscription_renews_to_the_new_expiration_and_cancel_stops_it(world: World):
    first = await subscribe(world)
    (m,) = await world.rows(Membership)
    assert (m.provider_subscription_id, m.auto_renew) == (first["telegram_payment_charge_id"], True)

    # Thirty days on, Telegram charges again: access runs to the new expiration.
    since = await world.last_id(BUYER)
    await world.tg.advance_clock(30 * DAY + 60)
    renewal = next(
        p
        for p in await world.tg.payments()
        if p["telegram_payment_charge_id"] != first["telegram_payment_charge_id"]
    )
    assert renewal["is_recurring"] and not renewal["is_first_recurring"]
    want = datetime.fromtimestamp(renewal["subscription_expiration_date"], UTC)
    assert want == datetime.fromtimestamp(first["subscription_expiration_date"], UTC) + timedelta(
        days=30
    )

    async def extended() -> bool:
        (m,) = await world.rows(Membership)
        return aware(m.expires_at) == want

    await world.eventually(extended)
    await world.wait_text(BUYER, "now runs until", since=since)
    assert len(await charges(world)) == 2
    (order,) = await world.rows(Order)
    assert order.status == "paid"

    # /cancel: Telegram is told to stop, and the next period charges nothing.
    reply = await world.ask(BUYER, "/cancel", match=lambda m: "Auto-renew is off" in (m.text or ""))
    assert reply.text
    (edit,) = await world.tg.calls("editUserStarSubscription")
    assert edit["params"]["user_id"] == str(BUYER)
    assert edit["params"]["telegram_payment_charge_id"] == first["telegram_payment_charge_id"]
    assert edit["params"]["is_canceled"] in ("true", "True", True)
    (sub,) = await world.tg.star_subscriptions()
    assert sub["canceled_by_bot"] is True
    await world.tg.advance_clock(31 * DAY)
    await settled(world)
    assert len(await world.tg.payments()) == 2
    assert len(await charges(world)) == 2
    (m,) = await world.rows(Membership)
    assert m.auto_renew is False and aware(m.expires_at) == want


async def test_subscription_updates_switch_auto_renew_and_a_failed_renewal_is_told(world: World):
    first = await subscribe(world)
    charge_id = first["telegram_payment_charge_id"]

    async def auto_renew(want: bool) -> None:
        async def check() -> bool:
            (m,) = await world.rows(Membership)
            return m.auto_renew is want

        await world.eventually(check)

    await world.tg.star_subscription_action(charge_id, "cancel")
    await auto_renew(False)
    await world.tg.star_subscription_action(charge_id, "renew")
    await auto_renew(True)

    since = await world.last_id(BUYER)
    await world.tg.star_subscription_action(charge_id, "fail")
    await world.tg.advance_clock(30 * DAY + 60)
    told = await world.wait_text(BUYER, "did not go through", since=since)
    assert "250 XTR" in told.text
    await settled(world)
    assert len(await charges(world)) == 1
    (m,) = await world.rows(Membership)
    assert m.status == "active"  # access runs to its paid end; the lapse job ends it
    events = sorted(e.event_type for e in await world.rows(WebhookEvent))
    assert events == [
        "subscription.active",
        "subscription.canceled",
        "subscription.failed",
        "successful_payment",
    ]
    assert all(e.error is None for e in await world.rows(WebhookEvent))


# -- reconciliation ----------------------------------------------------------------------------


async def test_a_missed_payment_is_found_in_the_star_transactions_exactly_once(world: World):
    await stars_shop(world)
    stars = world.service.providers["stars"]
    stars.page_size = 2  # type: ignore[attr-defined]  # the missed payment is on page 2

    invoice = await stars_invoice(world)
    lost = await world.tg.pay_invoice(BUYER, invoice.message_id, deliver=False)
    assert lost["status"] == "paid" and "message_id" not in lost
    charge_id = lost["telegram_payment_charge_id"]
    (missed,) = await world.rows(Order)
    # Newer transactions: two more purchases and a refund Telegram made itself.
    newer = []
    for _ in range(2):
        other = await stars_invoice(world, STRANGER)
        newer.append(await world.tg.pay_invoice(STRANGER, other.message_id))
        await world.invite_for(STRANGER)
    await world.tg.telegram_refund(newer[0]["telegram_payment_charge_id"])
    await settled(world)
    assert len(await world.tg.star_transactions()) == 4
    assert (await world.rows(Order, col(Order.id) == missed.id))[0].status == "pending"

    world.clock.advance(timedelta(minutes=10))
    later = world.clock.now()
    kw = {"min_age": timedelta(minutes=5), "order_timeout": timedelta(hours=1)}
    counts = await reconcile_pending(world.db, world.service.providers, later, **kw)
    assert counts["granted"] == 1, counts
    pages = await world.tg.calls("getStarTransactions")
    assert [c["params"]["offset"] for c in pages][:2] == ["0", "2"]
    assert all(c["params"]["limit"] == "2" for c in pages)
    await world.invite_for(BUYER)

    # Once: a second pass, and the lost update arriving after all, change nothing.
    again = await reconcile_pending(world.db, world.service.providers, later, **kw)
    assert again["claimed"] == 0
    await world.tg.resend_payment(charge_id)
    await settled(world)
    mine = await world.rows(Payment, col(Payment.order_id) == missed.id)
    assert [(p.kind, p.provider_payment_id, p.amount_minor) for p in mine] == [
        ("charge", charge_id, 250)
    ]
    (event,) = await world.rows(WebhookEvent, col(WebhookEvent.event_id) == charge_id)
    assert (event.event_type, event.error) == ("reconcile.paid", None)
    assert len(await world.rows(Membership, col(Membership.user_id) == missed.user_id)) == 1


# -- refunds -----------------------------------------------------------------------------------


async def bought(world: World) -> tuple[Order, str]:
    await stars_shop(world)
    invoice = await stars_invoice(world)
    paid = await world.tg.pay_invoice(BUYER, invoice.message_id)
    await join(world)
    (order,) = await world.rows(Order)
    return order, paid["telegram_payment_charge_id"]


async def revoked_and_net_zero(world: World, order: Order, since_buyer: int, since_owner: int):
    told = await world.wait_text(BUYER, "was refunded", since=since_buyer)
    assert order.order_no in told.text
    owner = await world.wait_text(OWNER, "Refund: 250 XTR", since=since_owner)
    assert order.order_no in owner.text
    await world.wait_status(GROUP, BUYER, "left")
    (m,) = await world.rows(Membership)
    assert m.status == "revoked"
    (o,) = await world.rows(Order)
    assert o.status == "refunded"
    assert await net(world) == 0
    await settled(world)
    refunds = await world.rows(Payment, col(Payment.kind) == "refund")
    assert [(r.amount_minor, r.currency) for r in refunds] == [(250, "XTR")]


async def test_a_stars_refund_through_the_outbox_revokes_and_settles_once(world: World):
    order, charge_id = await bought(world)
    (charge,) = await charges(world)
    since_buyer, since_owner = await world.last_id(BUYER), await world.last_id(OWNER)
    async with world.db.transaction() as s:
        # As billing/refunds.py queues it.
        enqueue(
            s,
            "refund_payment",
            "stars",
            {
                "provider": "stars",
                "payment_row_id": charge.id,
                "payment_id": charge_id,
                "amount_minor": 250,
                "currency": "XTR",
                "order_no": order.order_no,
                "buyer_ref": str(BUYER),
                "reason": "requested_by_customer",
                "idempotency_key": f"gatepass-refund-stars-{charge_id}",
                "owner": {"user_id": str(OWNER), "platform": "telegram", "language": "en"},
            },
            world.clock.now(),
        )
    world.service.wake_outbox()
    await revoked_and_net_zero(world, order, since_buyer, since_owner)
    (call,) = await world.tg.calls("refundStarPayment")
    assert call["params"] == {"user_id": str(BUYER), "telegram_payment_charge_id": charge_id}
    # Our record of the refund and Telegram's refunded_payment message are one event.
    (event,) = await world.rows(WebhookEvent, col(WebhookEvent.event_id) == f"refund:{charge_id}")
    assert event.error is None
    (row,) = await world.rows(Outbox, col(Outbox.kind) == "refund_payment")
    assert row.status == "done"


async def test_the_owner_refunds_a_stars_order_with_refund(world: World):
    """/refund <order> of a Stars order: refundStarPayment once from the outbox, the buyer
    removed and told, the ledger at zero; a second /refund is reported, not sent again."""
    order, charge_id = await bought(world)
    since_buyer, since_owner = await world.last_id(BUYER), await world.last_id(OWNER)
    asked = await world.ask(
        OWNER, f"/refund {order.order_no}", match=lambda m: "requested" in (m.text or "")
    )
    assert asked.text == t(
        "order_refund_requested", "en", amount="250 XTR", order_no=order.order_no
    )
    await revoked_and_net_zero(world, order, since_buyer, since_owner)
    (call,) = await world.tg.calls("refundStarPayment")
    assert call["params"] == {"user_id": str(BUYER), "telegram_payment_charge_id": charge_id}
    again = await world.ask(
        OWNER, f"/refund {order.order_no}", match=lambda m: "already" in (m.text or "")
    )
    assert again.text == t(
        "order_refund_already_done", "en", order_no=order.order_no, amount="250 XTR"
    )
    assert len(await world.tg.calls("refundStarPayment")) == 1
    (event,) = await world.rows(WebhookEvent, col(WebhookEvent.event_id) == f"refund:{charge_id}")
    assert event.error is None


async def test_a_refund_telegram_makes_itself_revokes_per_policy(world: World):
    order, charge_id = await bought(world)
    since_buyer, since_owner = await world.last_id(BUYER), await world.last_id(OWNER)
    await world.tg.telegram_refund(charge_id)
    await revoked_and_net_zero(world, order, since_buyer, since_owner)
    assert await world.tg.calls("refundStarPayment") == []
    (event,) = await world.rows(WebhookEvent, col(WebhookEvent.event_id) == f"refund:{charge_id}")
    assert (event.event_type, event.error) == ("refunded_payment", None)


async def test_a_stars_subscription_must_renew_every_30_days(world: World):
    reply = await world.ask(
        OWNER, "/setup", chat=GROUP, match=lambda m: "group #" in (m.text or "")
    )
    group_no = int((reply.text or "").split("group #")[1].split()[0].strip("(),"))
    refused = await world.ask(
        OWNER, f"/addsub {group_no} 1y 250XTR", match=lambda m: "Usage:" in (m.text or "")
    )
    first, *_ = refused.text.splitlines()
    assert first == t("stars_sub_period", "en")
    plans = await world.ask(OWNER, "/plans", match=lambda m: "#" in (m.text or ""))
    assert "250 XTR" not in plans.text


async def test_with_stars_the_owner_is_offered_xtr(world: World):
    reply = await world.ask(
        OWNER, "/setup", chat=GROUP, match=lambda m: "group #" in (m.text or "")
    )
    group_no = int((reply.text or "").split("group #")[1].split()[0].strip("(),"))
    refused = await world.ask(
        OWNER, f"/addplan {group_no} 3x 250XTR", match=lambda m: "Usage:" in (m.text or "")
    )
    assert "currencies: USD, EUR, GBP, CNY, XTR" in refused.text
    added = await world.ask(
        OWNER, f"/addplan {group_no} 30d 250XTR", match=lambda m: "Plan #" in (m.text or "")
    )
    assert "250 XTR" in added.text


async def test_a_refunded_subscription_is_stopped_at_telegram(world: World):
    first = await subscribe(world)
    charge_id = first["telegram_payment_charge_id"]
    await world.tg.telegram_refund(charge_id)
    await world.wait_status(GROUP, BUYER, "left")

    async def stopped() -> bool:
        return bool(await world.tg.calls("editUserStarSubscription"))

    await world.eventually(stopped)
    (edit,) = await world.tg.calls("editUserStarSubscription")
    assert edit["params"]["user_id"] == str(BUYER)
    assert edit["params"]["telegram_payment_charge_id"] == charge_id
    (stop,) = await world.rows(Outbox, col(Outbox.kind) == "stop_renewal")
    assert stop.payload["buyer_ref"] == str(BUYER)

    async def done() -> bool:
        (row,) = await world.rows(Outbox, col(Outbox.kind) == "stop_renewal")
        return row.status == "done"

    await world.eventually(done)
    await world.tg.advance_clock(31 * DAY)
    await settled(world)
    assert len(await world.tg.payments()) == 1  # no charge after the refund
    assert await net(world) == 0
