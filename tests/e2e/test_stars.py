"""Telegram Stars end to end: the real service and the Bot API emulator, the buyer paying in
the chat (XTR), through the same ledger path as Stripe."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
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
    async with world.db.session() as s:
        rows = (
            await s.execute(
                select(Payment.kind, func.sum(Payment.amount_minor)).group_by(Payment.kind)
            )
        ).all()
    by = dict(rows)
    return int(by.get("charge", 0)) - int(by.get("refund", 0))


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
