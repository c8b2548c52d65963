"""The WeChat bot, the way its people meet it: the whole service (the e2e World, with the
local WeChat Pay host) and the WeChat worker (`gatepass wechat`, in-process) on one database,
python-wechaty talking to the local puppet service over real gRPC.

The owner sets up a room and adds a plan by chat; a buyer picks from 菜单 by numbers, gets
the WeChat Pay QR code as an image, pays, and WeChat Pay's signed notification gets them
added to the room; a room that takes no direct add gets them its join code instead; the
lapse removes them; an intruder is reported, then removed once the owner asks for it; and a
plan that bundles a Telegram group and a WeChat room grants both to one person's linked
accounts, and one lapse ends both. Skipped, saying why, where Node is missing.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from sqlmodel import col

from bot.i18n import t
from sandbox.wechatpay_host import FakeWechatPay
from storage.models import ChatGroup, Membership, Order, Plan, User
from tests.e2e.conftest import start_world, stop_world
from tests.e2e.wechat_rig import WechatRig, start_wechat
from tests.e2e.world import BUYER, GROUP, OWNER, World
from tests.wechat_world import PuppetService, node_missing

pytestmark = pytest.mark.skipif(node_missing() is not None, reason=str(node_missing()))

ROOM = "paid@chatroom"
W_OWNER, ALICE, BOB, MALLORY = "wxid_owner", "wxid_alice", "wxid_bob", "wxid_mallory"


def found(pattern: str, text: str) -> str:
    """The first group of `pattern` in `text`, which must be there."""
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return match.group(1)


class Shop:
    def __init__(self, world: World, wx: FakeWechatPay, puppet: PuppetService, rig: WechatRig):
        self.world, self.wx, self.puppet, self.rig = world, wx, puppet, rig

    async def ask(self, contact: str, text: str, contains: str, room: str | None = None) -> str:
        """`contact` writes `text`; the bot's first answer (to the room if `room`) from then
        on containing `contains`."""
        since = await self.rig.mark()
        await self.rig.say(contact, text, room)
        return await self.rig.wait_text(room or contact, contains, since=since)

    async def set_up_room(self, plan: str = "30d 9.90CNY Monthly") -> int:
        """The room's owner registers it (in the room) and adds a plan (in private)."""
        await self.ask(W_OWNER, "English", "English")
        reply = await self.ask(W_OWNER, "/setup", "room #", room=ROOM)
        room_no = int(found(r"room #(\d+)", reply))
        await self.ask(W_OWNER, f"/addplan {room_no} {plan}", "Plan #")
        return room_no

    async def buy(self, contact: str) -> str:
        """`contact` buys the room's first plan with WeChat Pay, by numbers, in Chinese (the
        default); the order number. The QR code arrives as an image."""
        menu = await self.ask(contact, "菜单", t("wechat_rooms", "zh"))
        assert "1. Paid room" in menu, menu
        await self.ask(contact, "1", "1.")  # the room's plans
        methods = await self.ask(contact, "1", "微信支付")  # the plan's payment methods
        pick = next(line for line in methods.splitlines() if "微信支付" in line)
        since = await self.rig.mark()
        await self.rig.say(contact, pick.split(".")[0].strip())
        image = await self.rig.wait_image(contact, since=since)
        assert image["mediaType"] == "image/png" and base64.b64decode(image["base64"])
        text = await self.rig.wait_text(contact, "/pay/GP", since=since)
        order_no = found(r"(GP[A-Z0-9]{10})", text)
        assert f"{self.world.public_url}/pay/{order_no}" in text
        return order_no

    async def members(self) -> list[str]:
        return await self.puppet.members(ROOM)

    async def in_room(self, contact: str, present: bool = True) -> None:
        async def check() -> bool:
            return (contact in await self.members()) is present

        await self.world.eventually(check, timeout=10)

    async def sweep(self, **delta: float) -> None:
        self.world.clock.advance(timedelta(**delta))
        await self.world.service.sweeps.run_sweeps_once(self.world.clock.now())
        self.rig.worker.wake_outbox()


@pytest.fixture
def puppet() -> Iterator[PuppetService]:
    service = PuppetService()
    service.start()
    yield service
    service.stop()


@pytest.fixture
async def shop(db_url: tuple[str, str | None], puppet: PuppetService) -> AsyncIterator[Shop]:
    wx = FakeWechatPay()
    world, emulator = await start_world(db_url, hosts=[wx])
    wx.clock = world.clock  # orders expire on the service's (movable) time
    try:
        rig = await start_wechat(world, puppet)
        try:
            yield Shop(world, wx, puppet, rig)
        finally:
            await rig.stop()
    finally:
        await stop_world(world, emulator)


async def order(world: World, order_no: str) -> Order:
    (row,) = await world.rows(Order, col(Order.order_no) == order_no)
    return row


async def test_a_buyer_picks_by_numbers_pays_by_wechat_pay_and_is_added(shop: Shop):
    room_no = await shop.set_up_room()
    # An owner's bad command: one line with the usage, and nothing changes.
    refusal = await shop.ask(W_OWNER, f"/addplan {room_no} 30x 9.90CNY", "Usage")
    assert len(refusal.splitlines()[0]) < 120 and "30x" in refusal.splitlines()[0]
    assert len(await shop.world.rows(Plan)) == 1
    plans = await shop.ask(W_OWNER, "/plans", "Monthly")
    assert "9.90 CNY" in plans or "9.90CNY" in plans, plans

    order_no = await shop.buy(ALICE)
    assert (await order(shop.world, order_no)).provider == "wechatpay"
    assert ALICE not in await shop.members()
    since = await shop.rig.mark()
    shop.wx.pay(order_no)  # scanned and paid: WeChat Pay's signed notification reaches us
    await shop.in_room(ALICE)
    await shop.rig.wait_text(ALICE, "Paid room", since=since)
    assert (await order(shop.world, order_no)).status == "paid"
    (m,) = await shop.world.rows(Membership)
    assert m.status == "active"
    # The notification again (WeChat Pay retries): nothing more happens.
    note = next(n for n in shop.wx.notifications if n.event_type == "TRANSACTION.SUCCESS")
    attempt = await shop.wx.notifier.resend(note.id)
    assert attempt.status is not None and 200 <= attempt.status < 300
    assert len(await shop.world.rows(Membership)) == 1
    assert (await shop.members()).count(ALICE) == 1

    mine = await shop.ask(ALICE, "我的", "Paid room")
    assert "Paid room" in mine
    orders = await shop.ask(ALICE, "订单", order_no)
    assert order_no in orders
    # She asked for nothing yet the owner heard of no intruder: she came in paid.
    assert not [x for x in await shop.rig.texts_to(W_OWNER) if "without an active" in x]


async def test_a_room_that_takes_no_direct_add_gets_the_buyer_its_join_code(shop: Shop):
    await shop.set_up_room()
    await shop.puppet.set_full(ROOM)  # over 40 members, or invite confirmation on
    order_no = await shop.buy(ALICE)
    since = await shop.rig.mark()
    shop.wx.pay(order_no)
    code = await shop.rig.wait_image(ALICE, since=since)  # the room's join QR code
    assert code["mediaType"] == "image/png"
    told = await shop.rig.wait_text(ALICE, "Paid room", since=since)
    assert "二维码" in told or "QR" in told, told
    await shop.rig.wait_text(W_OWNER, "QR code", since=since)
    assert ALICE not in await shop.members()
    # She scans it and joins: the guard knows she paid, so the owner hears of no intruder.
    await shop.puppet.scan(ROOM, ALICE)
    await shop.in_room(ALICE)
    await shop.sweep(seconds=1)
    assert not [x for x in await shop.rig.texts_to(W_OWNER) if "without an active" in x]


async def test_the_lapse_removes_the_member_and_tells_them(shop: Shop):
    await shop.set_up_room()
    order_no = await shop.buy(ALICE)
    since = await shop.rig.mark()
    shop.wx.pay(order_no)
    await shop.in_room(ALICE)
    await shop.rig.wait_text(ALICE, "Paid room", since=since)  # "you are in"
    since = await shop.rig.mark()
    await shop.sweep(days=27, hours=1)  # three days before the end: the renew reminder
    reminder = await shop.rig.wait_text(ALICE, "续费", since=since)
    assert "Paid room" in reminder, reminder
    await shop.sweep(days=4, hours=1)  # ended, inside the grace period: still in
    assert ALICE in await shop.members()
    since = await shop.rig.mark()
    await shop.sweep(hours=25)  # past the grace period: removed with room.delete, and told
    await shop.in_room(ALICE, present=False)
    await shop.rig.wait_text(ALICE, "Paid room", since=since)
    (m,) = await shop.world.rows(Membership)
    assert m.status == "expired"


async def test_an_intruder_is_reported_then_removed_once_the_owner_asks(shop: Shop):
    room_no = await shop.set_up_room()
    since = await shop.rig.mark()
    await shop.puppet.room_add(ROOM, MALLORY, by=W_OWNER)  # added by hand, never paid
    report = await shop.rig.wait_text(W_OWNER, "without an active membership", since=since)
    assert f"/guard {room_no} remove" in report
    assert MALLORY in await shop.members()  # the default is to report only

    await shop.ask(W_OWNER, f"/guard {room_no} remove", "now removed")
    since = await shop.rig.mark()
    await shop.puppet.room_add(ROOM, BOB, by=W_OWNER)
    await shop.rig.wait_text(W_OWNER, "so I removed them", since=since)
    await shop.in_room(BOB, present=False)
    # Not the room's owner: /guard changes nothing.
    refusal = await shop.ask(ALICE, f"/guard {room_no} report", "/guard")
    assert len(refusal.splitlines()) <= 2, refusal
    await shop.ask(W_OWNER, "/plans", "Monthly")
    (group,) = await shop.world.rows(ChatGroup)
    assert group.guard == "remove"


async def _link(shop: Shop, tg_user: int, contact: str) -> None:
    """`tg_user` asks for a code on Telegram and `contact` sends it to the bot on WeChat."""
    reply = await shop.world.ask(tg_user, "/link", match=lambda m: "link code" in (m.text or ""))
    code = found(r"([A-Z0-9]{8})\n", reply.text or "")
    await shop.ask(contact, f"/link {code}", "Telegram")


async def test_a_bundle_of_a_telegram_group_and_a_wechat_room_grants_and_ends_both(shop: Shop):
    world = shop.world
    # The owner: a Telegram group and a WeChat room, one person on two platforms.
    reply = await world.ask(
        OWNER, "/setup", chat=GROUP, match=lambda m: "group #" in (m.text or "")
    )
    group_no = int((reply.text or "").split("group #")[1].split()[0].strip("(),"))
    await shop.ask(W_OWNER, "English", "English")
    room_no = int(found(r"room #(\d+)", await shop.ask(W_OWNER, "/setup", "room #", room=ROOM)))
    await _link(shop, OWNER, W_OWNER)
    await world.ask(
        OWNER,
        f"/addplan {group_no},{room_no} 30d 4.99USD Both",
        match=lambda m: "Plan #" in (m.text or ""),
    )
    # The buyer links their WeChat account, then buys on Telegram.
    await _link(shop, BUYER, ALICE)
    since = await shop.rig.mark()
    checkout = await world.checkout(BUYER)
    assert await world.stripe.pay(checkout.rstrip("/").rsplit("/", 1)[1]) == 200
    link = await world.invite_for(BUYER)  # the Telegram group: the buyer's invite
    assert await world.tg.join_by_link(BUYER, link) == "requested"
    await world.wait_status(GROUP, BUYER, "member")
    await shop.in_room(ALICE)  # the WeChat room: the linked account, added
    await shop.rig.wait_text(ALICE, "Paid room", since=since)
    (tg_user,) = await world.rows(User, col(User.platform_user_id) == str(BUYER))
    (wx_user,) = await world.rows(User, col(User.platform_user_id) == ALICE)
    held = {(m.user_id, m.status) for m in await world.rows(Membership)}
    assert held == {(tg_user.id, "active"), (wx_user.id, "active")}

    # One lapse ends both.
    await shop.sweep(days=31, hours=1)
    await shop.sweep(hours=25)
    await world.wait_status(GROUP, BUYER, "left")
    await shop.in_room(ALICE, present=False)
    assert {m.status for m in await world.rows(Membership)} == {"expired"}
