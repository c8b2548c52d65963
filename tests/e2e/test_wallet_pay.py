"""Issue 11, end to end over the Telegram emulator: the buyer pays a plan from the wallet
(balance only, no provider), or the wallet plus Stripe for the rest; an unpaid remainder
expires and the held balance comes back; the payment PIN is asked for, its messages are
deleted, and five wrong tries lock wallet spending."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlmodel import col

from billing.wallet import BALANCE, account_for, credit
from storage.models import Order, User, WalletAccount, WalletHold
from tests.e2e.world import BUYER, World

PLAN = "30d 9.90CNY Monthly access"


def has_text(needle: str):
    return lambda m: needle in (m.text or "")


async def seed_balance(world: World, minor: int) -> None:
    """Top-ups are another branch's: the buyer's balance is credited as a top-up would."""
    async with world.db.transaction() as s:
        buyer = (
            await s.execute(select(User).where(col(User.platform_user_id) == str(BUYER)))
        ).scalar_one_or_none()
        assert buyer is not None
        acct = await account_for(s, buyer.id, BALANCE, "CNY", world.clock.now())
        await credit(s, acct, minor, reason="adjust", key=f"seed:{minor}", now=world.clock.now())


async def balance(world: World) -> int:
    (acct,) = await world.rows(WalletAccount, col(WalletAccount.kind) == BALANCE)
    return int(acct.balance)


async def methods(world: World):
    groups = await world.ask(BUYER, "/start", match=lambda m: bool(m.callback_data))
    plans = await world.press(BUYER, groups, "grp:", match=lambda m: bool(m.callback_data))
    return await world.press(BUYER, plans, "pln:", match=lambda m: bool(m.callback_data))


async def test_buy_with_balance_only_then_orders_show_it(world: World):
    await world.set_up_shop(PLAN)
    await seed_balance(world, 1000)
    menu = await methods(world)
    assert any(d.startswith("wpay:") and d.endswith(":wallet:CNY") for d in menu.callback_data)
    since = await world.last_id(BUYER)
    data = next(d for d in menu.callback_data if d.endswith(":wallet:CNY"))
    await world.tg.press_button(BUYER, menu.message_id, data, chat_id=BUYER)
    receipt = await world.tg.wait_for_message(BUYER, has_text("paid from your wallet"), since=since)
    assert "9.90 CNY" in receipt.text and "9 points" in receipt.text
    await world.invite_for(BUYER)
    (order,) = await world.rows(Order)
    assert (order.status, order.provider, order.amount_minor, order.wallet_minor) == (
        "paid",
        "wallet",
        0,
        990,
    )
    assert await balance(world) == 10
    assert world.stripe.sessions == {}  # no provider was asked
    orders = await world.ask(BUYER, "/orders", match=has_text("Your orders"))
    assert "9.90 CNY balance" in orders.text


async def test_wallet_plus_stripe_pays_the_rest_and_commits_the_hold(world: World):
    await world.set_up_shop(PLAN)
    await seed_balance(world, 500)
    menu = await methods(world)
    checkout = await world.press(
        BUYER, menu, "wpay:", match=lambda m: bool(m.button_urls), suffix=":stripe:CNY"
    )
    assert "4.90 CNY" in checkout.text  # what Stripe charges: the price less the balance
    await world.wait_text(BUYER, "reserved")
    sid = checkout.button_urls[0].rstrip("/").rsplit("/", 1)[1]
    assert world.stripe.sessions[sid]["amount_total"] == 490
    assert await balance(world) == 0
    assert await world.stripe.pay(sid) == 200
    await world.invite_for(BUYER)
    (hold,) = await world.rows(WalletHold)
    assert hold.status == "committed"
    orders = await world.ask(BUYER, "/orders", match=has_text("Your orders"))
    assert "5.00 CNY balance + 4.90 CNY stripe" in orders.text


async def test_an_unpaid_remainder_expires_and_the_balance_comes_back(world: World):
    await world.set_up_shop(PLAN)
    await seed_balance(world, 500)
    menu = await methods(world)
    await world.press(
        BUYER, menu, "wpay:", match=lambda m: bool(m.button_urls), suffix=":stripe:CNY"
    )
    assert await balance(world) == 0
    timeout = world.service.settings.scheduler.order_timeout_minutes
    world.clock.advance(timedelta(minutes=timeout + 10))
    await world.service.sweeps.run_sweeps_once(world.clock.now())

    async def expired() -> bool:
        (order,) = await world.rows(Order)
        return order.status == "expired"

    await world.eventually(expired)
    assert await balance(world) == 500
    (hold,) = await world.rows(WalletHold)
    assert hold.status == "released"


async def test_the_pin_is_asked_its_messages_deleted_and_five_wrong_tries_lock(world: World):
    await world.set_up_shop(PLAN)
    await seed_balance(world, 1000)
    await world.ask(BUYER, "/pin 12", match=has_text("4 to 6 digits"))
    await world.ask(BUYER, "/pin 2468", match=has_text("PIN is set"))
    await world.ask(BUYER, "/pin 1357", match=has_text("PIN already"))  # not replaced
    menu = await methods(world)
    await world.press(BUYER, menu, "wpay:", match=has_text("PIN"), suffix=":wallet:CNY")
    for left in (4, 3, 2, 1):
        tries = "try" if left == 1 else "tries"
        await world.ask(BUYER, "1111", match=has_text(f"Wrong PIN, {left} {tries} left."))
    locked = await world.ask(BUYER, "1111", match=has_text("locked until"))
    assert "UTC" in locked.text
    # Even the right PIN pays nothing while locked.
    menu = await methods(world)
    await world.press(BUYER, menu, "wpay:", match=has_text("locked until"), suffix=":wallet:CNY")
    assert await world.count(Order) == 0 and await balance(world) == 1000
    # Every message that carried a PIN is gone from the chat.
    said = await world.tg.sent_messages(BUYER, everyone=True, include_deleted=False)
    texts = [m.text or "" for m in said]
    assert not any(t in ("1111", "/pin 2468", "/pin 12") for t in texts)
    everything = await world.tg.sent_messages(BUYER, everyone=True, include_deleted=True)
    assert [m.text for m in everything].count("1111") == 5  # they were said, then deleted

    # After the lock, the right PIN pays.
    world.clock.advance(timedelta(minutes=16))
    menu = await methods(world)
    await world.press(BUYER, menu, "wpay:", match=has_text("PIN"), suffix=":wallet:CNY")
    await world.ask(BUYER, "2468", match=has_text("paid from your wallet"))
    await world.invite_for(BUYER)
    assert await balance(world) == 10
    await world.ask(BUYER, "/pin off 1357", match=has_text("Wrong PIN, 4 tries left"))
    await world.ask(BUYER, "/pin off 2468", match=has_text("PIN is removed"))
    said = await world.tg.sent_messages(BUYER, everyone=True)
    assert not any((m.text or "").startswith("/pin off") for m in said)
