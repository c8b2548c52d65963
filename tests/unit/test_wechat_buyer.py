"""A buyer on WeChat: 菜单 → numbered rooms → plans → payment methods → the payment QR code,
and 我的 / 订单 / 续费 / 帮助 / the language switch, through bot.wechat.conversation.on_message
on a real database (SQLite; PostgreSQL too when configured)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from billing.errors import PaymentError
from billing.provider import Checkout, CheckoutRequest
from billing.providers.sandbox_provider import SandboxProvider
from bot.i18n import t
from membership.catalog import add_plan, register_group
from membership.grants import grant_days
from storage.models import ChatGroup, Order, Plan, User, WechatMenu
from storage.money import Money
from storage.queries import get_or_create_user
from tests.factories import MovableClock
from tests.qr_provider import QrProviderDouble
from tests.wechat_talk import OWNER, PUBLIC_URL, ROOM, Talk

ALICE = "wxid_alice"


class FailingQr(QrProviderDouble):
    async def create_checkout(self, req: CheckoutRequest) -> Checkout:
        raise PaymentError("wechatpay: SYSTEMERROR")


@pytest.fixture
def clock(now) -> MovableClock:
    return MovableClock(now)


@pytest.fixture
def providers():
    # The sandbox first, as configured: WeChat still lists the QR apps first.
    return {
        "sandbox": SandboxProvider("whsec_x", PUBLIC_URL),
        "wechatpay": QrProviderDouble(),
        "alipay": QrProviderDouble("alipay", "alipay", payload_prefix="https://qr.alipay.com/"),
    }


@pytest.fixture
def talk(db, clock, providers) -> Talk:
    return Talk(db, clock, providers)


async def make_room(
    db,
    now,
    *,
    chat_id: str = ROOM,
    title: str = "Paid room",
    prices: tuple[Money, ...] = (Money(2990, "CNY"),),
    plan_title: str = "Monthly",
    days: int | None = 30,
) -> tuple[int, int]:
    async with db.transaction() as s:
        owner = await get_or_create_user(s, "wechat", OWNER, now, first_name="Owner")
        group, _ = await register_group(
            s, owner, "wechat", chat_id, title, now, invite_mode="add_member"
        )
        plan = await add_plan(s, owner, [group], days, list(prices), plan_title, now)
        return group.id or 0, plan.id or 0


async def orders(db) -> list[Order]:
    async with db.session() as s:
        return list((await s.execute(select(Order).order_by(col(Order.id)))).scalars())


async def test_menu_plan_method_then_the_qr_code_in_chinese(db, now, talk):
    await make_room(db, now)
    await make_room(db, now, chat_id="vip@chatroom", title="VIP room", plan_title="Yearly")

    rooms = await talk.text("菜单")
    assert rooms == "\n".join([t("wechat_rooms", "zh"), "1. Paid room", "2. VIP room"])

    plans = await talk.text("1")
    assert plans.splitlines() == [
        t("wechat_pick_plan", "zh", group="Paid room"),
        "1. Monthly · 30 天 · 29.90 CNY",
    ]

    methods = await talk.text("1")
    assert methods.splitlines()[1:] == [
        "1. " + t("method_wechatpay", "zh", price="29.90 CNY"),
        "2. " + t("method_alipay", "zh", price="29.90 CNY"),
        "3. " + t("method_sandbox", "zh", price="29.90 CNY"),
    ]

    out = await talk.say("1")
    [order] = await orders(db)
    assert (order.provider, order.amount_minor, order.currency, order.status) == (
        "wechatpay",
        2990,
        "CNY",
        "pending",
    )
    async with db.session() as s:
        buyer = await s.get(User, order.user_id)
    assert buyer is not None and (buyer.platform, buyer.platform_user_id) == ("wechat", ALICE)
    image, text = out
    assert image.to == ALICE and image.image_png is not None
    assert image.image_png.startswith(b"\x89PNG") and image.image_name == f"{order.order_no}.png"
    assert text.to == ALICE and text.text == t(
        "wechat_qr_text",
        "zh",
        order_no=order.order_no,
        plan="Monthly",
        price="29.90 CNY",
        app=t("scan_app_wechat", "zh"),
        minutes=60,
        link=f"{PUBLIC_URL}/pay/{order.order_no}",
    )

    # The list is spent: another "1" opens no second order.
    assert await talk.text("1") == t("wechat_pick_none", "zh")
    assert len(await orders(db)) == 1


async def test_english_on_request_and_a_pay_link_provider(db, now, talk):
    await make_room(db, now)
    assert await talk.text("English") == t("language_set", "en")
    assert (await talk.text("menu")).splitlines() == [t("wechat_rooms", "en"), "1. Paid room"]
    assert (await talk.text("1")).splitlines()[1] == "1. Monthly · 30 days · 29.90 CNY"
    assert (await talk.text("1")).splitlines()[3] == "3. Sandbox test payment · 29.90 CNY"
    said = await talk.text("3")
    [order] = await orders(db)
    assert order.provider == "sandbox"
    assert said == t(
        "wechat_checkout_link",
        "en",
        order_no=order.order_no,
        plan="Monthly",
        price="29.90 CNY",
        link=f"{PUBLIC_URL}/sandbox/pay/{order.order_no}",
    )
    assert await talk.text("中文") == t("language_set", "zh")
    assert await talk.text("language en") == t("language_set", "en")
    assert await talk.text("language fr") == t("wechat_language_usage", "en")


async def test_a_number_without_a_list_or_out_of_range_says_send_the_menu(db, now, talk):
    assert await talk.text("2") == t("wechat_pick_none", "zh")
    await make_room(db, now)
    await talk.text("菜单")
    assert await talk.text("0") == t("wechat_pick_range", "zh", count=1)
    assert await talk.text("7") == t("wechat_pick_range", "zh", count=1)
    # The list is still there after a wrong number.
    assert (await talk.text("1")).startswith(t("wechat_pick_plan", "zh", group="Paid room"))
    assert await orders(db) == []


async def test_no_rooms_for_sale(talk):
    assert await talk.text("菜单") == t("wechat_no_rooms", "zh")
    assert await talk.text("1") == t("wechat_pick_none", "zh")


async def test_stars_only_plans_and_subscriptions_are_not_offered_by_qr(db, now, talk):
    """A plan priced only in Stars cannot be paid on WeChat; a recurring plan is not offered
    by the QR apps (one-off payments) but still by a pay link."""
    group_id, _ = await make_room(db, now, prices=(Money(250, "XTR"),))
    await talk.text("菜单")
    assert await talk.text("1") == t("no_plans", "zh", group="Paid room")
    async with db.transaction() as s:
        owner = await get_or_create_user(s, "wechat", OWNER, now)
        group = await s.get(ChatGroup, group_id)
        assert group is not None
        await add_plan(s, owner, [group], 30, [Money(2990, "CNY")], "Sub", now, recurring=True)
    await talk.text("菜单")
    await talk.text("1")
    methods = await talk.text("1")
    assert methods.splitlines()[1:] == ["1. " + t("method_sandbox", "zh", price="29.90 CNY")]


async def test_a_plan_gone_between_the_list_and_the_pick(db, now, talk):
    _, plan_id = await make_room(db, now)
    await talk.text("菜单")
    await talk.text("1")
    async with db.transaction() as s:
        plan = await s.get(Plan, plan_id)
        assert plan is not None
        plan.active = False
    assert await talk.text("1") == t("wechat_plan_gone", "zh")
    assert await talk.text("1") == t("wechat_pick_none", "zh")
    assert await orders(db) == []


async def test_a_provider_failure_says_try_again_and_keeps_the_order_on_record(db, now, clock):
    await make_room(db, now)
    talk = Talk(db, clock, {"wechatpay": FailingQr()})
    await talk.text("菜单")
    await talk.text("1")
    await talk.text("1")
    assert await talk.text("1") == t("checkout_failed", "zh")
    [order] = await orders(db)
    assert order.status == "failed"


async def test_my_orders_renew_help_and_unknown(db, now, talk, clock):
    assert await talk.text("我的") == t("wechat_my_none", "zh")
    assert await talk.text("订单") == t("wechat_orders_none", "zh")
    assert await talk.text("续费") == t("wechat_renew_none", "zh")
    assert await talk.text("帮助") == t("wechat_help", "zh")
    assert await talk.text("你好") == t("wechat_unknown", "zh")

    group_id, _ = await make_room(db, now)
    async with db.transaction() as s:
        alice = await get_or_create_user(s, "wechat", ALICE, now)
        group = await s.get(ChatGroup, group_id)
        assert group is not None
        m = await grant_days(s, alice, group, 30, now, actor="test", reason="test")
        until = m.expires_at
    assert await talk.text("我的") == "\n".join(
        [
            t("my_header", "zh"),
            t("my_active", "zh", group="Paid room", until=until),
            t("wechat_my_renew_hint", "zh"),
        ]
    )
    assert (await talk.text("续费")).splitlines() == [t("wechat_renew_pick", "zh"), "1. Paid room"]
    assert (await talk.text("1")).startswith(t("wechat_pick_plan", "zh", group="Paid room"))
    await talk.text("1")
    await talk.say("1")
    [order] = await orders(db)
    listed = await talk.text("订单")
    assert listed.splitlines()[0] == t("orders_header", "zh")
    assert order.order_no in listed.splitlines()[1]

    clock.t = now + timedelta(days=1)
    assert await talk.text("my", "wxid_alice") != t("wechat_my_none", "zh")


async def test_room_talk_is_ignored(db, now, talk):
    await make_room(db, now)
    for text in ("菜单", "hello", "1", "/plans"):
        assert await talk.in_room(text) == []
    async with db.session() as s:
        assert (await s.execute(select(WechatMenu))).first() is None
