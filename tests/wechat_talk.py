"""Talking to the WeChat conversation handler as the dispatcher does: one message, one session,
the handler's replies returned, then a commit (bot/wechat/dispatch.py does the same and
queues the replies). For the unit tests of bot/wechat/*.py on a real database."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import timedelta

from billing.provider import PaymentProvider
from bot.wechat.conversation import WechatEnv, on_message
from bot.wechat.events import Incoming, Outgoing
from gatepass.config import SchedulerConfig
from storage.db import Database
from tests.factories import MovableClock

BOT = "wxid_bot"
OWNER = "wxid_owner"
ROOM = "paid@chatroom"
PUBLIC_URL = "https://shop.example"


class Talk:
    def __init__(
        self, db: Database, clock: MovableClock, providers: Mapping[str, PaymentProvider]
    ) -> None:
        self.db, self.clock = db, clock
        self.env = WechatEnv(
            public_url=PUBLIC_URL,
            order_timeout=timedelta(minutes=SchedulerConfig().order_timeout_minutes),
            providers=providers,
            clock=clock,
            bot_id=BOT,
        )
        self._ids = itertools.count(1)

    async def send(self, msg: Incoming) -> list[Outgoing]:
        async with self.db.session() as s:
            out = await on_message(s, self.env, msg)
            await s.commit()
        return out

    async def say(self, text: str, who: str = "wxid_alice", name: str = "") -> list[Outgoing]:
        """A private message to the bot (the sender named after their id: wxid_bob is Bob)."""
        name = name or who.removeprefix("wxid_").title()
        return await self.send(Incoming(f"m{next(self._ids)}", who, name, text))

    async def text(self, text: str, who: str = "wxid_alice", name: str = "") -> str:
        """The one text reply to a private message (sent back to the sender)."""
        out = await self.say(text, who, name)
        assert [(o.to, o.image_png) for o in out] == [(who, None)], out
        assert out[0].text is not None
        return out[0].text

    async def in_room(
        self,
        text: str,
        who: str = OWNER,
        *,
        room: str = ROOM,
        topic: str = "Paid room",
        owner: str = OWNER,
        admins: tuple[str, ...] = (BOT,),
    ) -> list[Outgoing]:
        """A message in a room, with the room's owner and admins as the puppet reports them."""
        return await self.send(
            Incoming(
                f"m{next(self._ids)}",
                who,
                who.removeprefix("wxid_").title(),
                text,
                room_id=room,
                room_topic=topic,
                room_owner_id=owner,
                room_admin_ids=admins,
                room_member_count=2,
            )
        )
