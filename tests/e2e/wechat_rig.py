"""The WeChat worker beside the e2e World: one service, two chat platforms, one database.

`start_wechat(world, puppet)` starts the WeChat worker (`gatepass wechat`) in-process on the
World's database, clock, settings (with a [wechat] section pointing at the PuppetService)
and payment providers, and waits until its bot has logged in; `stop()` ends it. The people
around the bot are the PuppetService's control channel (tests/wechat_world.py): `say` is a
contact writing to the bot, `wait_text` waits for what the bot wrote back.

    puppet = PuppetService(); puppet.start()
    rig = await start_wechat(world, puppet)       # the real conversation handler
    try:
        await rig.say("wxid_alice", "菜单")
        await rig.wait_text("wxid_alice", "Paid room")
    finally:
        await rig.stop(); puppet.stop()

Or `async with wechat_worker(world, puppet) as rig:`. `handler_for` replaces the
conversation (bot/wechat/conversation.py) with a test's own; `wechat` sets [wechat] keys
(the rate budgets are the fastest allowed unless given: TEST_BUDGETS).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from bot.wechat.worker import HandlerFactory, WechatWorker
from gatepass.config import Settings, WechatConfig
from gatepass.wechat import build_worker
from tests.e2e.world import World
from tests.wechat_world import PuppetService

LOGIN_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
# Tests see a reconnect in well under a second instead of the worker's 1 s first wait.
TEST_FIRST_BACKOFF = 0.2


# The production budgets (20 a minute in all) would make every story wait seconds between
# messages; tests run at the fastest budgets [wechat] accepts unless they set their own.
TEST_BUDGETS = {"send_per_minute": 600, "per_chat_per_minute": 600, "per_room_per_minute": 600}


def wechat_settings(settings: Settings, puppet: PuppetService, **wechat: Any) -> Settings:
    """The World's settings plus a [wechat] section for `puppet` (and `wechat` keys)."""
    section = WechatConfig.model_validate(
        {"endpoint": puppet.endpoint, "token": puppet.token, **TEST_BUDGETS, **wechat}
    )
    return settings.model_copy(update={"wechat": section})


@dataclass
class WechatRig:
    world: World
    puppet: PuppetService
    worker: WechatWorker
    task: asyncio.Task[None]

    async def wait_logged_in(self, timeout: float = LOGIN_TIMEOUT) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self.worker.connected.wait()
        except TimeoutError:
            if self.task.done():
                self.task.result()  # the worker's own error says more
            raise AssertionError(
                f"the WeChat worker did not log in within {timeout}s; puppet log:\n"
                + self.puppet.log_text()[-2000:]
            ) from None

    async def wait_logged_out(self, timeout: float = LOGIN_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.worker.logged_in:
            if time.monotonic() > deadline:
                raise AssertionError(f"the WeChat worker still logged in after {timeout}s")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.worker.stop()
        async with asyncio.timeout(STOP_TIMEOUT):
            await asyncio.gather(self.task, return_exceptions=True)

    # -- the people around the bot ----------------------------------------------------------

    async def say(self, contact: str, text: str, room: str | None = None) -> str:
        """`contact` writes `text` to the bot (in `room` if given); the message's id."""
        return await self.puppet.say(contact, text, room)

    async def mark(self) -> int:
        """How much the bot has sent so far: pass as `since` to wait only for what follows."""
        return len(await self.puppet.sent())

    async def wait_text(
        self, contact: str, contains: str, *, since: int = 0, timeout: float = 10
    ) -> str:
        """The first text the bot sent to `contact` (a wxid or a room id) containing
        `contains`, waiting up to `timeout`."""
        item = await self._wait(
            lambda s: s["kind"] == "text" and s["to"] == contact and contains in s["text"],
            since,
            timeout,
        )
        return str(item["text"])

    async def wait_image(
        self, contact: str, *, since: int = 0, timeout: float = 10
    ) -> dict[str, Any]:
        """The first file the bot sent to `contact`: {"name", "mediaType", "base64", ...}."""
        return await self._wait(
            lambda s: s["kind"] == "file" and s["to"] == contact, since, timeout
        )

    async def texts_to(self, contact: str) -> list[str]:
        return [
            s["text"]
            for s in await self.puppet.sent()
            if s["kind"] == "text" and s["to"] == contact
        ]

    async def _wait(self, check: Any, since: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for item in await self.puppet.sent(since):
                if check(item):
                    return item
            if time.monotonic() > deadline:
                sent = [(s["to"], s.get("text", s.get("name"))) for s in await self.puppet.sent()]
                raise AssertionError(f"the bot sent nothing matching in {timeout}s; sent: {sent}")
            await asyncio.sleep(0.05)


async def start_wechat(
    world: World,
    puppet: PuppetService,
    *,
    handler_for: HandlerFactory | None = None,
    **wechat: Any,
) -> WechatRig:
    """Start the WeChat worker for `world` against the running `puppet`; logged in on return."""
    settings = wechat_settings(world.service.settings, puppet, **wechat)
    worker = build_worker(
        settings,
        world.db,
        world.clock,
        world.service.providers,
        handler_for=handler_for,
        first_backoff=TEST_FIRST_BACKOFF,
    )
    rig = WechatRig(world, puppet, worker, asyncio.create_task(worker.run()))
    try:
        await rig.wait_logged_in()
    except BaseException:
        await rig.stop()
        raise
    return rig


@asynccontextmanager
async def wechat_worker(
    world: World,
    puppet: PuppetService,
    *,
    handler_for: HandlerFactory | None = None,
    **wechat: Any,
) -> AsyncIterator[WechatRig]:
    rig = await start_wechat(world, puppet, handler_for=handler_for, **wechat)
    try:
        yield rig
    finally:
        await rig.stop()
