"""Per-update middleware: a DB session, the sender's user row and language."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User as TgUser

from bot.context import BotContext
from bot.i18n import pick_language
from storage.queries import get_or_create_user


class SessionMiddleware(BaseMiddleware):
    """Opens one session per update, commits when the handler returns, rolls back on error,
    and wakes the outbox worker so anything the handler queued goes out at once."""

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
            result = await handler(event, data)
            await session.commit()
        ctx.wake_outbox()
        return result
