"""The WeChat worker (`gatepass wechat`) end to end: the whole service (the e2e World) and
the worker in-process on its database, against the local puppet service over real gRPC.

A test conversation handler stands in for bot/wechat/conversation.py (its own tests cover
what it says): here it echoes, so what is tested is the worker's part: a message applied
once in its own transaction, its replies queued and sent, deliveries through the outbox
(removals, notices), the join guard on room-join, adds with the invitation fallback, the
rate budget, and reconnecting after the puppet service went away.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from billing.qr_image import qr_png
from bot.wechat.events import Incoming, Outgoing
from bot.wechat.worker import HandlerFactory
from membership.gateway import AddOutcome
from storage.models import ChatGroup, Outbox, User, WechatMessage
from tests.e2e.wechat_rig import WechatRig, start_wechat
from tests.e2e.world import World
from tests.wechat_world import PuppetService, node_missing

pytestmark = pytest.mark.skipif(node_missing() is not None, reason=str(node_missing()))

PAID = "paid@chatroom"
ALICE, BOB, MALLORY, OWNER = "wxid_alice", "wxid_bob", "wxid_mallory", "wxid_owner"


class Echo:
    """The conversation stand-in: answers "echo <text>" to the sender, in the message's
    transaction, and keeps what it was given."""

    def __init__(self) -> None:
        self.seen: list[Incoming] = []

    def __call__(self, bot_id: str) -> Any:
        async def handle(session: Any, msg: Incoming) -> list[Outgoing]:
            self.seen.append(msg)
            return [Outgoing(to=msg.room_id or msg.sender_id, text=f"echo {msg.text}")]

        return handle


@pytest.fixture
def puppet() -> Iterator[PuppetService]:
    service = PuppetService()
    service.start()
    yield service
    service.stop()


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
async def rig(world: World, puppet: PuppetService, echo: Echo) -> AsyncIterator[WechatRig]:
    handler: HandlerFactory = echo
    r = await start_wechat(world, puppet, handler_for=handler)
    yield r
    await r.stop()


async def queue(world: World, kind: str, payload: dict[str, Any]) -> None:
    async with world.db.transaction() as s:
        s.add(
            Outbox(
                kind=kind,
                platform="wechat",
                payload=payload,
                next_attempt_at=world.clock.now(),
                created_at=world.clock.now(),
            )
        )


async def test_a_message_is_answered_through_the_outbox(rig: WechatRig, world: World, echo: Echo):
    await rig.say(ALICE, "菜单")
    await rig.wait_text(ALICE, "echo 菜单")
    assert [(m.sender_id, m.sender_name, m.text, m.room_id) for m in echo.seen] == [
        (ALICE, "Alice", "菜单", None)
    ]
    # Applied once, in its own transaction: its id is recorded, its reply was an outbox row.
    assert await world.count(WechatMessage, WechatMessage.message_id == echo.seen[0].message_id)
    mine = (Outbox.kind == "reply", Outbox.platform == "wechat")
    await world.eventually(lambda: world.count(Outbox, *mine, Outbox.status == "done"))
    replies = await world.rows(Outbox, *mine)
    assert [r.payload for r in replies] == [{"chat_id": ALICE, "call": {"text": "echo 菜单"}}]


async def test_a_room_message_carries_the_room(rig: WechatRig, echo: Echo):
    await rig.say(OWNER, "/setup", room=PAID)
    await rig.wait_text(PAID, "echo /setup")
    (msg,) = echo.seen
    assert (msg.room_id, msg.room_topic, msg.room_owner_id) == (PAID, "Paid room", OWNER)
    assert msg.room_admin_ids == ("wxid_bot",)
    assert msg.room_member_count == 2


async def test_the_bots_own_messages_are_not_handled(rig: WechatRig, echo: Echo):
    await rig.say(BOB, "one")
    await rig.wait_text(BOB, "echo one")
    await rig.say(BOB, "two")
    await rig.wait_text(BOB, "echo two")
    # The puppet echoes "echo one" back as the bot's own message: never handled.
    assert [m.text for m in echo.seen] == ["one", "two"]


async def test_a_message_delivered_twice_is_applied_once(rig: WechatRig, world: World, echo: Echo):
    first = await rig.say(ALICE, "hello")
    await rig.wait_text(ALICE, "echo hello")
    await rig.puppet.message_again(first)  # the puppet delivers it again, same id
    await rig.say(ALICE, "after")  # one sender's messages are applied in order
    await rig.wait_text(ALICE, "echo after")
    assert [m.text for m in echo.seen] == ["hello", "after"]
    assert (await rig.texts_to(ALICE)).count("echo hello") == 1
    assert rig.worker.dispatcher is not None and rig.worker.dispatcher.duplicates == 1


async def test_a_notice_renders_buttons_as_lines(rig: WechatRig, world: World):
    await queue(
        world,
        "notify",
        {
            "user_id": BOB,
            "key": "renew_reminder",
            "params": {"group": "Paid room", "group_id": 1, "until": "2026-12-24T00:00:00+00:00"},
            "language": None,  # a WeChat user: Chinese unless they chose English
            "buttons": [
                {"text_key": "btn_renew", "url": "{buy_link}", "params": {"group": "Paid room"}},
                {"text_key": "btn_join", "callback_data": "x:1", "params": {"group": "Paid room"}},
            ],
        },
    )
    rig.worker.wake_outbox()
    text = await rig.wait_text(BOB, "Paid room")
    assert "给我发“菜单”" in text  # {buy_link}: what to send, as WeChat has no links to the bot
    assert text.endswith("续费Paid room：回复“续费”。")  # the renew button, as a line
    assert "x:1" not in text and "{" not in text


async def test_removal_goes_out_as_room_delete(rig: WechatRig, world: World):
    await rig.puppet.room_add(PAID, MALLORY, by=OWNER)
    await queue(world, "remove_member", {"chat_id": PAID, "user_id": MALLORY})
    # Someone already gone is done too (left, or removed by the owner first).
    await queue(world, "remove_member", {"chat_id": PAID, "user_id": BOB})
    rig.worker.wake_outbox()
    await world.eventually(
        lambda: world.count(
            Outbox,
            Outbox.platform == "wechat",
            Outbox.kind == "remove_member",
            Outbox.status == "done",
        ),
    )
    await world.eventually(
        lambda: _count_is(
            world,
            2,
            Outbox.platform == "wechat",
            Outbox.kind == "remove_member",
            Outbox.status == "done",
        )
    )
    assert MALLORY not in await rig.puppet.members(PAID)
    assert OWNER in await rig.puppet.members(PAID)


async def _count_is(world: World, n: int, *where: Any) -> bool:
    return await world.count(Outbox, *where) == n


async def test_an_intruder_is_guarded_on_room_join(rig: WechatRig, world: World):
    """room-join runs the join guard for the newcomer: in a room whose guard removes, a
    contact without access is removed through the outbox (room.delete)."""
    now = world.clock.now()
    async with world.db.transaction() as s:
        owner = User(platform="wechat", platform_user_id=OWNER, created_at=now)
        s.add(owner)
        await s.flush()
        s.add(
            ChatGroup(
                platform="wechat",
                chat_id=PAID,
                title="Paid room",
                owner_user_id=owner.id,
                invite_mode="add_member",
                guard="remove",
                created_at=now,
            )
        )
    await rig.puppet.room_add(PAID, MALLORY, by=OWNER)

    async def gone() -> bool:
        return MALLORY not in await rig.puppet.members(PAID)

    await world.eventually(gone)
    assert OWNER in await rig.puppet.members(PAID)  # the owner stays
    assert rig.worker.joins_failed == 0


async def test_add_member_adds_or_sends_the_rooms_join_code(rig: WechatRig):
    gateway = rig.worker.gateway
    assert await gateway.add_member(PAID, BOB) == AddOutcome.ADDED
    assert BOB in await rig.puppet.members(PAID)
    assert await gateway.add_member(PAID, BOB) == AddOutcome.ALREADY_MEMBER

    # A room that takes no direct add: Alice gets the room's join code as a QR image.
    await rig.puppet.set_full(PAID)
    since = await rig.mark()
    assert await gateway.add_member(PAID, ALICE) == AddOutcome.INVITED
    image = await rig.wait_image(ALICE, since=since)
    assert image["mediaType"] == "image/png"
    code = await rig.puppet.room_code(PAID)
    assert base64.b64decode(image["base64"]) == qr_png(code)  # the code of THIS room
    assert ALICE not in await rig.puppet.members(PAID)
    await rig.puppet.scan(PAID, ALICE)  # she scans it and is in
    assert ALICE in await rig.puppet.members(PAID)


async def test_the_rate_budget_spaces_messages_to_a_contact(world: World, puppet: PuppetService):
    """Two messages a second to one contact at most (per_chat_per_minute = 120): a burst
    of notices goes out spaced, none lost."""
    rig = await start_wechat(world, puppet, handler_for=Echo(), per_chat_per_minute=120)
    try:
        for i in range(4):
            await queue(
                world,
                "notify",
                {"user_id": BOB, "key": "wechat_buy_link", "params": {"n": i}, "language": "en"},
            )
        rig.worker.wake_outbox()
        await world.eventually(
            lambda: _count_is(
                world,
                4,
                Outbox.platform == "wechat",
                Outbox.kind == "notify",
                Outbox.status == "done",
            ),
            timeout=15,
        )
        times = [s["at"] for s in await puppet.sent() if s["to"] == BOB]
        assert len(times) == 4
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 450, gaps  # 500 ms apart, give or take the timer
    finally:
        await rig.stop()


async def test_reconnects_and_delivers_what_was_queued_while_down(
    world: World, puppet: PuppetService
):
    rig = await start_wechat(world, puppet, handler_for=Echo())
    try:
        puppet.kill()  # the puppet service crashes
        await rig.wait_logged_out()
        await queue(
            world,
            "notify",
            {"user_id": ALICE, "key": "wechat_buy_link", "params": {}, "language": "en"},
        )
        rig.worker.wake_outbox()
        puppet.start()  # back on the same port
        await rig.wait_logged_in()
        assert rig.worker.connections == 2
        await rig.wait_text(ALICE, 'send me "menu"')
        (row,) = await world.rows(Outbox, Outbox.platform == "wechat", Outbox.kind == "notify")
        assert row.status == "done"
        assert row.attempts == 1  # nobody tried while the bot was away
        # Messages flow again on the new connection.
        await rig.say(BOB, "back")
        await rig.wait_text(BOB, "echo back")
    finally:
        await rig.stop()


async def test_applied_message_ids_are_pruned(rig: WechatRig, world: World):
    from bot.wechat.dispatch import MESSAGE_RETENTION, prune_messages

    await rig.say(ALICE, "old")
    await rig.wait_text(ALICE, "echo old")
    later = world.clock.now() + MESSAGE_RETENTION + timedelta(minutes=1)
    assert await prune_messages(world.db, later) == 1
    async with world.db.session() as s:
        assert (await s.execute(select(WechatMessage))).first() is None
