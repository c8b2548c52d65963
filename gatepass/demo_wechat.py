"""The demo's WeChat chapter: the same service sells a WeChat room through the WeChat bot.

The local Wechaty puppet service (sandbox/wechaty/service.py, a Node program) stands in for
WeChat; the WeChat worker (`gatepass wechat`) runs in-process on the demo's database, clock
and payment providers, as tests/e2e/wechat_rig.py runs it. Without Node or its packages the
chapter is skipped with one line saying why.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from gatepass.config import WechatConfig
from gatepass.service import Service
from sandbox.wechaty.service import PuppetService, node_missing
from storage.clock import Clock

ROOM = "traders@chatroom"
ROOM_TOPIC = "Traders Club WeChat"
BOT, MEI, LI = "wxid_gatepass", "wxid_mei", "wxid_li"
NAMES = {MEI: "Mei (room owner)", LI: "Li (buyer)"}
SEED: dict[str, Any] = {
    "bot": {"id": BOT, "name": "Gatepass"},
    "contacts": [{"id": MEI, "name": "Mei"}, {"id": LI, "name": "Li"}],
    "rooms": [
        {
            "id": ROOM,
            "topic": ROOM_TOPIC,
            "ownerId": MEI,
            "adminIdList": [BOT],
            "memberIdList": [BOT, MEI],
        }
    ],
}
# The production send budgets (20 a minute) would make the chapter wait between messages;
# the demo runs at the fastest ones [wechat] accepts.
BUDGETS = {"send_per_minute": 600, "per_chat_per_minute": 600, "per_room_per_minute": 600}
TIMEOUT = 15.0
# python-wechaty's chatter (the explicit endpoint wins, no web plugin, FileBox's mimeType
# deprecation) would interleave with the transcript; its errors still show.
QUIET_LOGGERS = ("PuppetService", "wechaty.plugin", "FileBox")


class WechatFailed(Exception):
    pass


class Chat:
    """The people around the WeChat bot, through the puppet's control channel; prints what
    they write and what the bot writes back."""

    def __init__(self, puppet: PuppetService, say: Callable[[str], None]) -> None:
        self.puppet, self.say = puppet, say

    async def write(
        self, who: str, text: str, until: Callable[[dict[str, Any]], bool], room: bool = False
    ) -> dict[str, Any]:
        """`who` writes `text` (in the room if `room`); the bot's answers to that chat up to
        the first passing `until`, printed."""
        since = len(await self.puppet.sent())
        where = ROOM_TOPIC if room else "private chat"
        self.say(f"{NAMES[who]} in WeChat {where}: {text}")
        await self.puppet.say(who, text, ROOM if room else None)
        return await self.answer(ROOM if room else who, since, until)

    async def answer(
        self, to: str, since: int, until: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            sent = (await self.puppet.sent())[since:]
            mine = [s for s in sent if s["to"] == to]
            hit = next((i for i, s in enumerate(mine) if until(s)), None)
            if hit is not None:
                for item in mine[: hit + 1]:
                    self._print(to, item)
                return mine[hit]
            await asyncio.sleep(0.05)
        raise WechatFailed(f"the WeChat bot did not answer {to} in {TIMEOUT}s")

    def _print(self, to: str, item: dict[str, Any]) -> None:
        where = ROOM_TOPIC if to == ROOM else NAMES[to].split()[0]
        if item["kind"] == "file":
            size = len(base64.b64decode(item["base64"]))
            self.say(f"  WeChat bot → {where}: [image: QR code, {size} bytes PNG]")
            return
        text = str(item["text"]).replace("\n", "\n      ")
        self.say(f"  WeChat bot → {where}: {text}")


def text_with(needle: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: s["kind"] == "text" and needle in s["text"]


def wechaty_missing() -> str | None:
    """Why the WeChat worker cannot run here (the `wechat` extra is not installed), or None."""
    if importlib.util.find_spec("wechaty") is None:
        return "python-wechaty is not installed: `make demo` installs it (the [wechat] extra)"
    return None


async def wechat_chapter(
    say: Callable[[str], None], service: Service, clock: Clock, phone: str
) -> bool:
    """Play the chapter on the running service; False when it was
    skipped because Node is missing (one line says why)."""
    say("\n== WeChat: a room owner sells her room, a buyer pays by WeChat Pay and is added ==")
    why = node_missing() or wechaty_missing()
    if why is not None:
        say(f"(WeChat chapter skipped: {why})")
        return False
    # Imported here: python-wechaty is the optional `wechat` extra, as in `gatepass wechat`.
    from gatepass.wechat import build_worker

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    puppet = PuppetService(seed=SEED)
    await asyncio.to_thread(puppet.start)
    try:
        config = WechatConfig.model_validate(
            {"endpoint": puppet.endpoint, "token": puppet.token, **BUDGETS}
        )
        settings = service.settings.model_copy(update={"wechat": config})
        worker = build_worker(settings, service.db, clock, service.providers, first_backoff=0.2)
        task = asyncio.create_task(worker.run())
        try:
            try:
                async with asyncio.timeout(TIMEOUT):
                    await worker.connected.wait()
            except TimeoutError:
                raise WechatFailed("the WeChat worker did not log in") from None
            say(
                f"(a local WeChat stand-in, the Wechaty puppet service on {puppet.endpoint}; "
                f"the bot 'Gatepass' is an admin of Mei's room '{ROOM_TOPIC}')"
            )
            await _play(Chat(puppet, say), puppet, phone)
        finally:
            worker.stop()
            async with asyncio.timeout(TIMEOUT):
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await asyncio.to_thread(puppet.stop)
    return True


async def _play(chat: Chat, puppet: PuppetService, phone: str) -> None:
    say = chat.say
    await chat.write(MEI, "English", text_with("English"))
    setup = await chat.write(MEI, "/setup", text_with("room #"), room=True)
    room_no = re.search(r"room #(\d+)", setup["text"])
    if room_no is None:
        raise WechatFailed(f"/setup gave no room number: {setup['text']}")
    await chat.write(MEI, f"/addplan {room_no.group(1)} 30d 9.90CNY Monthly", text_with("Plan #"))

    await chat.write(LI, "菜单", text_with(f"1. {ROOM_TOPIC}"))
    await chat.write(LI, "1", text_with("Monthly"))
    methods = await chat.write(LI, "1", text_with("微信支付"))
    pick = next(line for line in methods["text"].splitlines() if "微信支付" in line)
    qr = await chat.write(LI, pick.split(".")[0].strip(), text_with("/pay/GP"))
    found = re.search(r"(GP[A-Z0-9]{10})", qr["text"])
    if found is None:
        raise WechatFailed(f"no order number in {qr['text']}")
    order_no = found.group(1)
    since = len(await puppet.sent())
    async with aiohttp.ClientSession() as http:
        async with http.get(phone) as r:
            if r.status != 200 or order_no not in await r.text():
                raise WechatFailed(f"the sandbox phone does not list order {order_no}")
        say(f"Li scans the QR image with WeChat ({phone}) and pays ¥9.90")
        async with http.post(f"{phone}/pay", data={"order_no": order_no}) as r:
            if r.status != 200 or f"Paid {order_no}" not in await r.text():
                raise WechatFailed(f"WeChat Pay did not take the payment for {order_no}")
    say("  WeChat Pay: paid; its signed, encrypted notification goes to /webhooks/wechatpay")
    await chat.answer(LI, since, text_with(ROOM_TOPIC))
    deadline = time.monotonic() + TIMEOUT
    while LI not in await puppet.members(ROOM):
        if time.monotonic() > deadline:
            raise WechatFailed(f"Li was not added to {ROOM_TOPIC}")
        await asyncio.sleep(0.05)
    say(f"  WeChat: the bot added Li to '{ROOM_TOPIC}'; Li is now a member")
