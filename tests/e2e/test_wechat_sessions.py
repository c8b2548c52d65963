"""The WeChat worker across the account's own session: WeChat logs the account out (the
phone ended the session, a security check) and it logs in again, all while the puppet
service and its event stream stay up. The worker must deliver again after the new login."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bot.wechat.events import Incoming, Outgoing
from storage.models import ChatGroup, Outbox, User
from tests.e2e.wechat_rig import WechatRig, start_wechat
from tests.e2e.world import World
from tests.wechat_world import PuppetService, node_missing

pytestmark = pytest.mark.skipif(node_missing() is not None, reason=str(node_missing()))

ALICE = "wxid_alice"
PAID = "paid@chatroom"


def echo(bot_id: str) -> Any:
    async def handle(session: Any, msg: Incoming) -> list[Outgoing]:
        return [Outgoing(to=msg.room_id or msg.sender_id, text=f"echo {msg.text}")]

    return handle


@pytest.fixture
def puppet() -> Iterator[PuppetService]:
    service = PuppetService()
    service.start()
    yield service
    service.stop()


@pytest.fixture
async def rig(world: World, puppet: PuppetService) -> AsyncIterator[WechatRig]:
    r = await start_wechat(world, puppet, handler_for=echo)
    yield r
    await r.stop()


async def test_a_logout_then_a_new_login_delivers_again(rig: WechatRig, puppet: PuppetService):
    await rig.say(ALICE, "before")
    await rig.wait_text(ALICE, "echo before")
    await puppet._call("POST", "/logout")
    await rig.wait_logged_out()
    await puppet._call("POST", "/login")
    # python-wechaty hears `login` once per Wechaty: the worker must see this one all the same.
    await rig.wait_logged_in()
    since = await rig.mark()
    await rig.say(ALICE, "after")
    await rig.wait_text(ALICE, "echo after", since=since)


async def test_the_join_guard_runs_when_the_puppet_cannot_name_the_people(
    rig: WechatRig, world: World, puppet: PuppetService
):
    """A room-join whose inviter is unknown to the puppet (none given: a join by a shared
    code) and whose newcomer it has no contact payload for (a stranger to the bot): the
    guard needs their ids only. python-wechaty loads both contacts first and dropped the
    event when it could not, so an intruder stayed."""
    now = world.clock.now()
    async with world.db.transaction() as s:
        owner = User(platform="wechat", platform_user_id="wxid_owner", created_at=now)
        s.add(owner)
        await s.flush()
        s.add(
            ChatGroup(
                platform="wechat",
                chat_id=PAID,
                title="Paid room",
                owner_user_id=owner.id,
                invite_mode="add_member",
                guard="report",
                created_at=now,
            )
        )
    await puppet._call("POST", "/room/joined", {"room": PAID, "contact": "wxid_stranger"})
    reported = (Outbox.platform == "wechat", Outbox.kind != "reply")
    await world.eventually(lambda: world.count(Outbox, *reported))
    assert rig.worker.joins_failed == 0
