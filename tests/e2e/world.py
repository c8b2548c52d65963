"""The whole service, started for real, with the outside world around it: the Telegram Bot
API emulator (users talk to the bot over HTTP), a local Stripe API host (which signs and
delivers webhooks as Stripe does) and the sandbox checkout page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from sqlalchemy import func, select

from gatepass.config import Settings
from gatepass.service import Service
from sandbox.stripe_host import FakeStripe
from sandbox.telegram.client import EmulatorClient, SentMessage
from storage.clock import MovableClock
from storage.db import Database

BOT_TOKEN = "4242:e2e-secret"
BOT_ID = 4242
STRIPE_KEY = "sk_test_e2e"
STRIPE_WHSEC = "whsec_e2e"
SANDBOX_SECRET = "sandbox-e2e"
OWNER, BUYER, STRANGER = 1001, 2002, 3003
GROUP = -1001234


class OutsideHost(Protocol):
    """A provider's API host beside the service (WeChat Pay, Alipay), started before it by
    start_world(hosts=...) and stopped after it."""

    section: str  # the config section it fills ("wechatpay", "alipay")

    async def start_for(self, public_url: str) -> dict[str, Any]:
        """Start serving; told where the service's webhooks are (`public_url`), return the
        config section that points the service at this host (keys written to files here)."""
        ...

    async def stop(self) -> None: ...


@dataclass
class World:
    service: Service
    tg: EmulatorClient
    stripe: FakeStripe
    db: Database
    clock: MovableClock
    public_url: str
    # The extra provider hosts this world was started with, by config section name.
    hosts: dict[str, OutsideHost] = field(default_factory=dict)

    # --- people talking ---------------------------------------------------------------
    async def say(self, user: int, text: str, chat: int | None = None) -> int:
        return await self.tg.send_text(user, text, chat_id=chat)

    async def last_id(self, chat: int) -> int:
        msgs = await self.tg.sent_messages(chat, everyone=True)
        return msgs[-1].message_id if msgs else 0

    async def ask(
        self,
        user: int,
        text: str,
        match: Callable[[SentMessage], bool] | None = None,
        chat: int | None = None,
        timeout: float = 8,
    ) -> SentMessage:
        """Say something and wait for the bot's answer (the first one matching `match`)."""
        where = chat if chat is not None else user
        since = await self.last_id(where)
        await self.say(user, text, chat)
        return await self.tg.wait_for_message(where, match, since=since, timeout=timeout)

    async def press(
        self,
        user: int,
        msg: SentMessage,
        prefix: str,
        match: Callable[[SentMessage], bool] | None = None,
        timeout: float = 8,
        suffix: str = "",
    ) -> SentMessage:
        """Press the first button whose callback data starts with `prefix` (and ends with
        `suffix`); wait for the bot's reply."""
        data = next(d for d in msg.callback_data if d.startswith(prefix) and d.endswith(suffix))
        since = await self.last_id(msg.chat_id)
        await self.tg.press_button(user, msg.message_id, data, chat_id=msg.chat_id)
        return await self.tg.wait_for_message(msg.chat_id, match, since=since, timeout=timeout)

    async def wait_text(
        self, chat: int, needle: str, since: int | None = None, timeout: float = 8
    ) -> SentMessage:
        return await self.tg.wait_for_message(
            chat, lambda m: needle in (m.text or ""), since=since, timeout=timeout
        )

    # --- looking inside ---------------------------------------------------------------
    async def count(self, model: Any, *where: Any) -> int:
        async with self.db.session() as s:
            return int(
                (
                    await s.execute(select(func.count()).select_from(model).where(*where))
                ).scalar_one()
            )

    async def rows(self, model: Any, *where: Any) -> list[Any]:
        async with self.db.session() as s:
            return list((await s.execute(select(model).where(*where))).scalars().all())

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.public_url}{path}", data=body, headers=headers) as r,
        ):
            return r.status, await r.text()

    # --- the usual story --------------------------------------------------------------
    async def set_up_shop(
        self, plan_args: str = "30d 4.99USD Monthly access", mode: str = ""
    ) -> int:
        """The owner registers the group and adds a plan; returns our group number."""
        reply = await self.ask(
            OWNER, f"/setup {mode}".strip(), chat=GROUP, match=lambda m: "group #" in (m.text or "")
        )
        group_no = int((reply.text or "").split("group #")[1].split()[0].strip("(),"))
        await self.ask(
            OWNER, f"/addplan {group_no} {plan_args}", match=lambda m: "Plan #" in (m.text or "")
        )
        return group_no

    async def checkout(
        self,
        buyer: int = BUYER,
        provider: str = "stripe",
        currency: str = "USD",
        plan: int | None = None,
    ) -> str:
        """The buyer browses and picks a plan (the first, or `plan`) and a payment method;
        returns the checkout URL."""
        groups = await self.ask(buyer, "/start", match=lambda m: bool(m.callback_data))
        plans = await self.press(buyer, groups, "grp:", match=lambda m: bool(m.callback_data))
        methods = await self.press(
            buyer, plans, f"pln:{plan or ''}", match=lambda m: bool(m.callback_data)
        )
        pay = await self.press(
            buyer,
            methods,
            "pay:",
            match=lambda m: bool(m.button_urls),
            suffix=f":{provider}:{currency}",
        )
        return pay.button_urls[0]

    async def invite_for(self, buyer: int = BUYER, timeout: float = 8) -> str:
        msg = await self.tg.wait_for_message(
            buyer, lambda m: any("t.me/+" in u for u in m.button_urls), timeout=timeout
        )
        return next(u for u in msg.button_urls if "t.me/+" in u)

    async def eventually(self, check: Callable[[], Any], timeout: float = 8) -> None:
        """Poll an async check until it returns truthy: deliveries are asynchronous."""
        import asyncio
        import time

        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError(f"still not true after {timeout}s: {check}")
            await asyncio.sleep(0.05)

    async def wait_status(self, chat: int, user: int, want: str, timeout: float = 8) -> None:
        import asyncio
        import time

        deadline = time.monotonic() + timeout
        while (got := await self.tg.member_status(chat, user)) != want:
            if time.monotonic() > deadline:
                raise AssertionError(f"user {user} in {chat} is {got}, not {want}")
            await asyncio.sleep(0.05)


def settings_for(
    db_url: str,
    port: int,
    tg_url: str,
    stripe_url: str,
    sections: dict[str, dict[str, Any]] | None = None,
    **telegram: Any,
) -> Settings:
    return Settings.model_validate(
        {
            **(sections or {}),
            "database": {"url": db_url},
            "web": {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"},
            "telegram": {"token": BOT_TOKEN, "api_server": tg_url, "admin_ids": [], **telegram},
            "stripe": {
                "secret_key": STRIPE_KEY,
                "webhook_secret": STRIPE_WHSEC,
                "api_base": stripe_url,
            },
            "sandbox_pay": {"webhook_secret": SANDBOX_SECRET},
            "scheduler": {"outbox_interval_seconds": 0.1},
        }
    )


async def populate(tg: EmulatorClient) -> None:
    """The people and the group of every story: the owner's group with the bot as admin."""
    await tg.create_bot(BOT_TOKEN, username="gatepass_bot")
    await tg.create_user(OWNER, "Olga", username="olga", language_code="en")
    await tg.create_user(BUYER, "Bob", username="bob", language_code="en")
    await tg.create_user(STRANGER, "Sam", username="sam", language_code="en")
    await tg.create_chat(GROUP, creator_id=OWNER, title="Traders Club")
    await tg.promote(
        GROUP,
        BOT_ID,
        {"can_invite_users": True, "can_restrict_members": True, "can_manage_chat": True},
        by=OWNER,
    )
    await tg.send_text(OWNER, "/help")  # owner and buyers have started the bot
    await tg.send_text(BUYER, "/help")
