"""钱包 / wallet on WeChat (bot/wechat/wallet.py): the wallet and the numbered top-ups, a
number → the payment methods (the QR apps first, never Stars) → the QR code of an order of
kind "topup"; a spent list opens nothing twice; a top-up taken off sale is said so; a
wallet turned off ([wallet] enabled = false) sells none."""

from __future__ import annotations

import pytest

from billing import wallet
from billing.providers.sandbox_provider import SandboxProvider
from billing.topup import TopupArgs, add_topup, remove_topup
from bot.i18n import t
from membership.catalog import register_group
from storage.models import Order
from storage.money import Money
from storage.queries import get_or_create_user
from tests.factories import MovableClock
from tests.qr_provider import QrProviderDouble
from tests.unit.test_ledger_rules import rows
from tests.wechat_talk import OWNER, PUBLIC_URL, ROOM, Talk

ALICE = "wxid_alice"


@pytest.fixture
def talk(db, now) -> Talk:
    return Talk(
        db,
        MovableClock(now),
        {"sandbox": SandboxProvider("whsec_x", PUBLIC_URL), "wechatpay": QrProviderDouble()},
    )


HUNDRED_PLUS_TEN = TopupArgs(Money(10000, "CNY"), Money(1000, "CNY"))


async def sell(db, now, args=HUNDRED_PLUS_TEN) -> int:
    async with db.transaction() as s:
        owner = await get_or_create_user(s, "wechat", OWNER, now, first_name="Owner")
        await register_group(s, owner, "wechat", ROOM, "Paid room", now, invite_mode="add_member")
        p = await add_topup(s, owner, args, now, admin_ids=(), payable=lambda c: True)
        return p.id or 0


async def test_wallet_lists_topups_and_a_number_opens_its_qr_code(db, now, talk):
    await sell(db, now)
    said = await talk.text("钱包")
    assert "你的钱包是空的。" in said
    assert "1. 充值 100.00 CNY（赠送 10.00 CNY）" in said
    methods = await talk.text("1")
    assert methods.splitlines()[1].startswith("1. ") and "微信" in methods.splitlines()[1]
    out = await talk.say("1")
    assert [o.image_png is not None for o in out] == [True, False]
    (order,) = await rows(db, Order)
    assert (order.kind, order.topup_id, order.plan_id, order.provider) == (
        "topup",
        1,
        None,
        "wechatpay",
    )
    assert order.order_no in (out[1].text or "") and "余额会立即存入你的钱包" in (out[1].text or "")
    # The list is spent: another "1" opens nothing.
    assert await talk.text("1") == t("wechat_pick_none", "zh")
    assert len(await rows(db, Order)) == 1


async def test_wallet_shows_the_balance_and_entries_in_english(db, now, talk):
    await sell(db, now)
    await talk.text("english")
    async with db.transaction() as s:
        alice = await get_or_create_user(s, "wechat", ALICE, now)
        acc = await wallet.account_for(s, alice.id, wallet.BALANCE, "CNY", now)
        await wallet.credit(s, acc, 500, reason="topup", key="seed", now=now)
    said = await talk.text("wallet")
    assert "Balance: 5.00 CNY" in said and "+5.00 CNY  top-up" in said
    assert "1. Top-up 100.00 CNY (+10.00 CNY bonus)" in said


async def test_a_topup_taken_off_sale_is_said_so(db, now, talk):
    n = await sell(db, now)
    await talk.text("钱包")
    async with db.transaction() as s:
        owner = await get_or_create_user(s, "wechat", OWNER, now)
        await remove_topup(s, owner, n, now, admin_ids=())
    assert "已下架" in await talk.text("1")
    assert "暂无可购买的充值项目" in await talk.text("钱包")


async def test_a_wallet_turned_off_sells_no_topups(db, now, talk):
    await sell(db, now)
    listed = await talk.text("钱包")
    assert "1. 充值 100.00 CNY" in listed
    talk.env.wallet_on = False  # turned off (and the worker restarted) with the list shown
    assert await talk.text("1") == t("wallet_off", "zh")
    assert await talk.text("钱包") == t("wallet_off", "zh")
    assert await rows(db, Order) == []
