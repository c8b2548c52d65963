"""Per-update middleware: a DB session, the sender's user row and language; and the rule
that the bot never says anything about a change before that change is committed."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject, User as TgUser
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import BotContext
from bot.gateway import RateLimiter
from bot.i18n import pick_language
from storage.queries import get_or_create_user


# The session of the update being handled in this task (unset outside handlers: the outbox
# and the sweeps send through the same Bot with nothing to commit).
_HANDLER_SESSION: ContextVar[AsyncSession | None] = ContextVar("handler_session", default=None)


class CommitBeforeSend(BaseRequestMiddleware):
    """Bot API middleware for the calls handlers make (replies, callback answers):

    - a call made while a handler's transaction is open commits it first. "Revoked", "plan
      added", "language set" are then only ever said about a change that is stored: the user
      (or a test) acting on the reply finds it done, and a failed commit raises before
      anything is said;
    - then the call takes its turn in the process's global rate budget (`limiter`, the one
      the outbox uses), so replies and deliveries together stay under Telegram's overall
      limit. Replies wait their turn rather than being dropped, and are not held to a chat's
      own budget: each answers a user's own action, which paces them already.

    Calls outside handlers (the outbox's) take their budget in the gateway."""

    def __init__(self) -> None:
        self.limiter: RateLimiter | None = None  # set once the service has built it

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        session = _HANDLER_SESSION.get()
        if session is None:
            return await make_request(bot, method)
        if session.in_transaction():
            await session.commit()  # before waiting for the budget: hold no connection then
        if self.limiter is not None:
            await self.limiter.acquire(None)
        return await make_request(bot, method)


class SessionMiddleware(BaseMiddleware):
    """Opens one session per update, commits when the handler returns, rolls back on error,
    and wakes the outbox worker so anything the handler queued goes out at once. Replies
    sent during the handler commit what was done so far first (CommitBeforeSend)."""

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        ctx: BotContext = data["ctx"]
        async with ctx.db.session() as session:
            data["session"] = session
            tg_user: TgUser | None = data.get("event_from_user")
            if tg_user is not None and not tg_user.is_bot:
                user = await get_or_create_user(
                    session, "telegram", str(tg_user.id), ctx.clock.now(),
                    username=tg_user.username, first_name=tg_user.first_name,
                    language=pick_language(None, tg_user.language_code),
                )
                data["user"] = user
                data["lang"] = pick_language(user.language)
            else:
                data["user"] = None
                data["lang"] = "en"
            token = _HANDLER_SESSION.set(session)
            try:
                result = await handler(event, data)
            finally:
                _HANDLER_SESSION.reset(token)
            await session.commit()
        ctx.wake_outbox()
        return result
