"""The WeChat side of the outside world for tests: the local Wechaty puppet service
(sandbox/wechaty/service.py, shared with `gatepass demo`) and `BotEvents`, which records what
a python-wechaty bot (connected through bot/wechat/compat.py) receives, and waits for an event
with a deadline. docs/wechat.md says how it fits together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.wechaty.service import (
    SERVER,
    SERVER_DIR,
    START_TIMEOUT,
    ControlError,
    PuppetService,
    default_seed,
    free_port,
    node_missing,
)

__all__ = [
    "SERVER",
    "SERVER_DIR",
    "START_TIMEOUT",
    "BotEvents",
    "ControlError",
    "PuppetService",
    "default_seed",
    "free_port",
    "node_missing",
]


@dataclass
class BotEvents:
    """What a python-wechaty bot received, as plain tuples, in order:
    ("login", contact_id), ("message", talker_id, text, is_self, room_id or None),
    ("room-join", room_id, [invitee ids], inviter_id),
    ("room-leave", room_id, [removee ids], remover_id or None)."""

    seen: list[tuple[Any, ...]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def attach(self, bot: Any) -> None:
        """Listen on a `Wechaty` (bot.wechat.compat) before it connects."""

        def login(contact: Any) -> None:
            self._add(("login", contact.contact_id))

        async def message(msg: Any) -> None:
            room = msg.room()
            self._add(
                (
                    "message",
                    msg.talker().contact_id,
                    msg.text(),
                    msg.is_self(),
                    room.room_id if room else None,
                )
            )

        def room_join(room: Any, invitees: list[Any], inviter: Any, date: Any) -> None:
            self._add(
                ("room-join", room.room_id, [c.contact_id for c in invitees], inviter.contact_id)
            )

        def room_leave(room: Any, leavers: list[Any], remover: Any, date: Any) -> None:
            by = remover.contact_id if remover else None
            self._add(("room-leave", room.room_id, [c.contact_id for c in leavers], by))

        bot.on("login", login)
        bot.on("message", message)
        bot.on("room-join", room_join)
        bot.on("room-leave", room_leave)

    def _add(self, event: tuple[Any, ...]) -> None:
        self.seen.append(event)
        self._changed.set()

    async def wait_for(
        self, check: Callable[[tuple[Any, ...]], bool], timeout: float = 10
    ) -> tuple[Any, ...]:
        """The first event passing `check` (seen already or arriving within `timeout`)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for event in self.seen:
                        if check(event):
                            return event
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no such event in {timeout}s; seen: {self.seen}") from None
