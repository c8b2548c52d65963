"""The Telegram front-end: aiogram Bot + Dispatcher, in long polling or webhook mode."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import BotCommand, Update

from bot.context import BotContext
from bot.gateway import TelegramGateway
from bot.handlers import get_routers
from bot.i18n import LANGUAGES, t
from bot.middlewares import RepliesAfterCommit, SessionMiddleware
from bot.polling import Poller
from bot.replies import ReplySender

log = logging.getLogger(__name__)

# How long stop() waits for update handlers in progress before cancelling them.
# The commands in the client's menu (button "/"), in this order; described by cmd_<name>.
MENU_COMMANDS = ("start", "my", "orders", "wallet", "pin", "cancel", "link", "language", "help")
HANDLER_GRACE_SECONDS = 10.0

# getUpdates long-poll timeout, seconds.
POLLING_TIMEOUT = 10

# chat_member and chat_join_request arrive only when listed; listing some drops the rest.
ALLOWED_UPDATES = [
    "message",
    "callback_query",
    "chat_member",
    "my_chat_member",
    "chat_join_request",
    "pre_checkout_query",
    "subscription",  # Telegram Stars subscriptions canceled / re-enabled / failing
]


def _fsm_storage(redis_url: str | None) -> BaseStorage:
    if redis_url:
        from aiogram.fsm.storage.redis import RedisStorage

        return RedisStorage.from_url(redis_url)
    return MemoryStorage()


class TelegramFrontend:
    def __init__(self, token: str, api_server: str, redis_url: str | None = None) -> None:
        session = AiohttpSession(api=TelegramAPIServer.from_base(api_server.rstrip("/")))
        # Handlers' replies: sent after the update's commit, retried, else outboxed. Its
        # `limiter` (the process's rate budget) is set by the service.
        self.replies = ReplySender()
        session.middleware(RepliesAfterCommit())
        self.sessions = SessionMiddleware(self.replies)
        self.bot = Bot(token, session=session)
        self.dp = Dispatcher(storage=_fsm_storage(redis_url))
        self.username = ""
        self._poller: Poller | None = None

    async def connect(self, clock: Any) -> TelegramGateway:
        """Learn who we are (fails fast on a bad token or an unreachable server)."""
        me = await self.bot.get_me()
        self.username = me.username or str(me.id)
        return TelegramGateway(self.bot, self.username, clock)

    def attach(self, ctx: BotContext) -> None:
        self.dp["ctx"] = ctx
        self.dp.update.outer_middleware(self.sessions)
        self.dp.include_routers(*get_routers())

    async def start_polling(self) -> None:
        """Our own polling loop (bot/polling.py), not aiogram's `Dispatcher.start_polling`:
        aiogram's confirms each update (with the next getUpdates offset) as soon as it is
        fetched, before its handler ran, so an update whose handler crashed or whose
        transaction failed is lost. Ours confirms an update only once it was applied, and
        hands each update to the same `feed_update` path as webhook mode."""
        await self.bot.delete_webhook(drop_pending_updates=False)
        await self._set_commands()
        self._poller = Poller(
            self.bot, self._feed, allowed_updates=ALLOWED_UPDATES, timeout=POLLING_TIMEOUT
        )
        self._poller.start()

    async def start_webhook(self, url: str, secret: str) -> None:
        await self._set_commands()
        await self.bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)

    async def _set_commands(self) -> None:
        # The default menu in English, and one per other language for clients set to it.
        for lang in LANGUAGES:
            await self.bot.set_my_commands(
                [BotCommand(command=c, description=t(f"cmd_{c}", lang)) for c in MENU_COMMANDS],
                language_code=None if lang == "en" else lang,
            )

    async def feed_raw_update(self, payload: dict[str, Any]) -> None:
        """Apply one update (webhook mode). Returns once its transaction committed and its
        replies were sent or handed to the outbox; raises only if nothing was committed
        (the update may then be sent again). An update applied before is a no-op."""
        await self._feed(Update.model_validate(payload, context={"bot": self.bot}))

    async def _feed(self, update: Update) -> None:
        """Apply one update: returns once it committed (or was found applied already) and
        its replies were sent or outboxed; raises only if nothing was committed."""
        await self.dp.feed_update(self.bot, update)

    async def stop(self) -> None:
        if self._poller is not None:
            # Stops fetching (a long poll in flight is dropped: its updates were not
            # confirmed) and lets handlers in progress finish within the grace period, so
            # none outlives the database it writes to.
            await self._poller.stop(HANDLER_GRACE_SECONDS)
        await self.dp.storage.close()
        await self.bot.session.close()
