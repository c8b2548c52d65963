"""Review of issue 11 in the Telegram chat: what /help and the client's command menu say of
the wallet (/wallet, /pin), in English and Chinese; a wallet choice tapped twice pays once;
a PIN request runs out and a PIN sent unasked is deleted; a wallet turned off sells no
top-ups."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from storage.models import Order, TopupProduct
from tests.e2e.conftest import start_world, stop_world
from tests.e2e.test_wallet_pay import PLAN, balance, methods, seed_balance
from tests.e2e.world import BOT_ID, BUYER, OWNER, World

DEFAULT = '{"type": "default"}|'


def has_text(needle: str):
    return lambda m: needle in (m.text or "")


async def test_help_and_the_command_menu_list_wallet_and_pin_in_both_languages(world: World):
    helped = await world.ask(BUYER, "/help", match=has_text("/start"))
    for line in ("/wallet — your balance", "/pin — set or remove", "/addtopup, /topups"):
        assert line in helped.text
    state = await world.tg.bot_state(BOT_ID)
    menus = state["commands"]
    en = {c["command"]: c["description"] for c in menus[DEFAULT]}
    zh = {c["command"]: c["description"] for c in menus[DEFAULT + "zh"]}
    assert list(en) == list(zh)
    assert {"wallet", "pin", "start", "orders", "help"} <= set(en)
    assert en["pin"] == "Set or remove your wallet PIN"
    assert zh["wallet"] == "我的余额、积分和充值" and zh["pin"] == "设置或取消钱包支付密码"

    pick = await world.ask(BUYER, "/language", match=lambda m: bool(m.callback_data))
    await world.press(BUYER, pick, "lang:zh")
    helped = await world.ask(BUYER, "/help", match=has_text("/start"))
    assert "/wallet — 我的余额、积分和充值" in helped.text
    assert "/pin — 设置或取消钱包支付密码" in helped.text
    assert "/addtopup、/topups、/deltopup" in helped.text


async def test_a_double_tap_on_the_wallet_button_pays_once(world: World):
    await world.set_up_shop(PLAN)
    await seed_balance(world, 5000)
    menu = await methods(world)
    data = next(d for d in menu.callback_data if d.endswith(":wallet:CNY"))
    since = await world.last_id(BUYER)
    await asyncio.gather(
        world.tg.press_button(BUYER, menu.message_id, data, chat_id=BUYER),
        world.tg.press_button(BUYER, menu.message_id, data, chat_id=BUYER),
    )
    await world.tg.wait_for_message(BUYER, has_text("paid from your wallet"), since=since)
    await world.wait_text(BUYER, "You chose this already", since=since)
    assert await world.count(Order) == 1
    assert await balance(world) == 5000 - 990
    # The same button pressed later (the balance has changed since) pays nothing again...
    since = await world.last_id(BUYER)
    await world.tg.press_button(BUYER, menu.message_id, data, chat_id=BUYER)
    await world.wait_text(BUYER, "You chose this already", since=since)
    assert await world.count(Order) == 1
    # ...while the plan opened anew is bought again, on purpose.
    menu = await methods(world)
    await world.press(BUYER, menu, "wpay:", has_text("paid from your wallet"), suffix=":wallet:CNY")
    assert await world.count(Order) == 2
    assert await balance(world) == 5000 - 2 * 990


async def test_a_pin_sent_long_after_it_was_asked_for_pays_nothing(world: World):
    await world.set_up_shop(PLAN)
    await seed_balance(world, 1000)
    await world.ask(BUYER, "/pin 2468", match=has_text("PIN is set"))
    menu = await methods(world)
    await world.press(BUYER, menu, "wpay:", match=has_text("PIN"), suffix=":wallet:CNY")
    world.clock.advance(timedelta(minutes=11))  # the buyer walked away
    await world.ask(BUYER, "2468", match=has_text("expired"))
    assert await world.count(Order) == 0 and await balance(world) == 1000
    said = await world.tg.sent_messages(BUYER, everyone=True, include_deleted=False)
    assert "2468" not in [m.text for m in said]
    # The buyer's next words are theirs again, not taken for a PIN.
    await world.ask(BUYER, "hello", match=has_text("did not understand"))
    # Within the wait, the PIN pays.
    menu = await methods(world)
    await world.press(BUYER, menu, "wpay:", match=has_text("PIN"), suffix=":wallet:CNY")
    world.clock.advance(timedelta(minutes=9))
    await world.ask(BUYER, "2468", match=has_text("paid from your wallet"))
    assert await world.count(Order) == 1 and await balance(world) == 10


class WalletOff:
    """No outside host: fills [wallet] with enabled = false for start_world."""

    section = "wallet"

    async def start_for(self, public_url: str) -> dict[str, Any]:
        return {"enabled": False}

    async def stop(self) -> None:
        return None


async def test_a_wallet_turned_off_sells_no_topups(db_url):
    world, emulator = await start_world(db_url, hosts=[WalletOff()])
    try:
        await world.set_up_shop(PLAN)
        off = await world.ask(OWNER, "/addtopup 100CNY 10CNY", match=has_text("turned off"))
        assert "Top-up #" not in off.text
        assert await world.count(TopupProduct) == 0
        shown = await world.ask(BUYER, "/wallet", match=has_text("turned off"))
        assert not shown.callback_data
        await world.ask(BUYER, "/pin 2468", match=has_text("turned off"))
        menu = await methods(world)
        assert not any(d.startswith("wpay:") for d in menu.callback_data)
    finally:
        await stop_world(world, emulator)


async def test_a_pin_sent_unasked_is_deleted_and_other_digits_are_left_alone(world: World):
    # Without a PIN, four digits are ordinary words (answered as such, kept in the chat).
    await world.ask(BUYER, "2468", match=has_text("did not understand"))
    await world.ask(BUYER, "/pin 2468", match=has_text("PIN is set"))
    # No PIN was asked for (say the bot restarted and forgot it asked): deleted all the same.
    await world.ask(BUYER, " 2468 ", match=has_text("expired"))
    await world.ask(BUYER, "hello 2468", match=has_text("did not understand"))
    said = await world.tg.sent_messages(BUYER, everyone=True, include_deleted=False)
    assert [m.text for m in said].count("2468") == 1  # the one sent before the PIN was set
    assert " 2468 " not in [m.text for m in said]


async def test_wallet_buttons_and_a_pin_after_the_wallet_was_turned_off_say_so(world: World):
    await world.set_up_shop(PLAN)
    await seed_balance(world, 1000)
    await world.ask(BUYER, "/pin 2468", match=has_text("PIN is set"))
    menu = await methods(world)
    await world.press(BUYER, menu, "wpay:", match=has_text("PIN"), suffix=":wallet:CNY")
    world.service.telegram.dp["ctx"].wallet_rules = None  # [wallet] enabled = false
    await world.ask(BUYER, "2468", match=has_text("turned off"))
    await world.press(BUYER, menu, "wpay:", match=has_text("turned off"), suffix=":wallet:CNY")
    assert await world.count(Order) == 0 and await balance(world) == 1000
