"""Issue 11 as one buyer lives it, over the Telegram emulator and the local Stripe host: the
owner sells a top-up, the buyer tops up through Stripe (balance + bonus credited once), then
buys a plan from that balance alone, and /wallet and /orders tell the story; the balance
equals the sum of its entries at every step."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import col

from storage.models import Order, WalletAccount, WalletEntry
from tests.e2e.world import BUYER, OWNER, World


def has_text(needle: str):
    return lambda m: needle in (m.text or "")


async def ledger_agrees(world: World) -> int:
    """The cached balance, checked against the sum of the account's entries."""
    (acct,) = await world.rows(WalletAccount, col(WalletAccount.kind) == "balance")
    async with world.db.session() as s:
        total = (
            await s.execute(
                select(func.coalesce(func.sum(WalletEntry.amount), 0)).where(
                    col(WalletEntry.account_id) == acct.id
                )
            )
        ).scalar_one()
    assert int(total) == int(acct.balance) >= 0
    return int(acct.balance)


async def test_top_up_with_stripe_then_buy_a_plan_from_the_balance(world: World):
    await world.set_up_shop("30d 4.99USD Monthly access")
    await world.ask(OWNER, "/addtopup 10USD 1USD", match=has_text("Top-up #"))

    wallet = await world.ask(BUYER, "/wallet", match=lambda m: bool(m.callback_data))
    methods = await world.press(BUYER, wallet, "tpu:", match=lambda m: bool(m.callback_data))
    pay = await world.press(
        BUYER, methods, "tpp:", match=lambda m: bool(m.button_urls), suffix=":stripe"
    )
    sid = pay.button_urls[0].rstrip("/").rsplit("/", 1)[1]
    assert await world.stripe.pay(sid) == 200
    await world.wait_text(BUYER, "Balance: 11.00 USD")
    assert await ledger_agrees(world) == 1100

    groups = await world.ask(BUYER, "/start", match=lambda m: bool(m.callback_data))
    plans = await world.press(BUYER, groups, "grp:", match=lambda m: bool(m.callback_data))
    menu = await world.press(BUYER, plans, "pln:", match=lambda m: bool(m.callback_data))
    choice = next(d for d in menu.callback_data if d.endswith(":wallet:USD"))
    since = await world.last_id(BUYER)
    await world.tg.press_button(BUYER, menu.message_id, choice, chat_id=BUYER)
    await world.tg.wait_for_message(BUYER, has_text("paid from your wallet"), since=since)
    await world.invite_for(BUYER)  # the plan's access, with no provider asked
    assert await ledger_agrees(world) == 601

    plan_order = next(o for o in await world.rows(Order) if o.kind == "plan")
    assert (plan_order.provider, plan_order.amount_minor, plan_order.wallet_minor) == (
        "wallet",
        0,
        499,
    )
    shown = await world.ask(BUYER, "/wallet", match=has_text("Balance"))
    assert "6.01 USD" in shown.text
    orders = await world.ask(BUYER, "/orders", match=has_text("Your orders"))
    assert "4.99 USD balance" in orders.text and "Top-up 10.00 USD" in orders.text
