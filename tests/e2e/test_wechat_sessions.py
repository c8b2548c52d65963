"""The WeChat worker across the account's own session: WeChat logs the account out (the
phone ended the session, a security check) and it logs in again, all while the puppet
service and its event stream stay up. The worker must deliver again after the new login."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bot.wechat.events import Incoming, Outgoing
from tests.e2e.wechat_rig import WechatRig, start_wechat
from tests.e2e.world import World
from tests.wechat_world import PuppetService, node_missing

pytestmark = pytest.mark.skipif(node_missing() is not None, reason=str(node_missing()))

ALICE = "wxid_alice"


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
