"""Review of issue 11 in the Telegram chat: what /help and the client's command menu say of
the wallet (/wallet, /pin), in English and Chinese."""

from __future__ import annotations

from tests.e2e.world import BOT_ID, BUYER, World

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
