"""Per-update middleware: exactly-once application of each Telegram update, a DB session, the
sender's user row and language; and the rule that the bot never says anything about a
change before that change is committed (bot/replies.py)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import (
    AnswerCallbackQuery,
    AnswerPreCheckoutQuery,
    Response,
    TelegramMethod,
)
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject, Update
from aiogram.types import User as TgUser

from bot.calls import is_send
from bot.context import BotContext
from bot.i18n import pick_language
from bot.replies import Replies, ReplySender
from storage.claims import claim_state, track_claim
from storage.queries import get_or_create_user
from storage.updates import claim_update, release_update

log = logging.getLogger(__name__)

# Set while a handler runs: replies then go through `out`, never straight to the Bot API.
_IN_HANDLER: ContextVar[bool] = ContextVar("in_handler", default=False)

# session.info key: where the update's telegram_update row stands in the session.
_CLAIM = "telegram_update_claim"


class RepliesAfterCommit(BaseRequestMiddleware):
    """Bot API middleware that refuses a message or callback answer sent straight from a
    handler: it would go out before the handler's transaction commits. Handlers add their
    replies to `out`, which the session middleware sends after the commit. Reads (like
    getChatMember in /setup) pass."""

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if _IN_HANDLER.get() and (
            is_send(method) or isinstance(method, AnswerCallbackQuery | AnswerPreCheckoutQuery)
        ):
            raise RuntimeError(
                f"{method.__api_method__} sent from inside a handler: add it to "
                "`out` so it goes out after the commit"
            )
        return await make_request(bot, method)


class _Failure:
    """What a failed update left behind: whether its claim had been committed."""

    committed_claim = False


class SessionMiddleware(BaseMiddleware):
    """Per update: claim its id (a re-delivered update is a no-op), open one session, run
    the handler, stage its replies, commit, then send the replies (after the commit; a
    failed commit sends nothing). A handler that raises rolls everything back, the update
    included, so Telegram's next delivery applies it.

    A handler that commits part way (to hold no transaction across a provider call: the pay
    button, /cancel, /revoke) has made its claim durable with that commit; if it then fails,
    the claim is given back after the rollback, or the next delivery would be skipped as
    applied and the press never answered. Those handlers are safe to run again: nothing was
    said yet (replies go out after the final commit), a cancellation is idempotent, and a pay
    button run again opens a fresh order (the first, never shown, times out unpaid). ("I have
    paid" rolls back instead of committing: its claim is taken again at the end.)"""

    def __init__(self, sender: ReplySender | None = None) -> None:
        self.sender = sender or ReplySender()
        self.duplicates = 0  # updates skipped because they were applied already

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        ctx: BotContext = data["ctx"]
        bot: Bot | None = data.get("bot")
        key = (bot.id, event.update_id) if isinstance(event, Update) and bot else None
        out = Replies()
        failed = _Failure()
        try:
            return await self._apply(handler, event, data, ctx, bot, key, out, failed)
        except Exception:
            if key is not None and failed.committed_claim:
                try:
                    await release_update(ctx.db, *key)
                    log.warning("update %s failed after its handler committed; released", key[1])
                except Exception:  # the database is gone too: the original error matters
                    log.exception("update %s: could not release its claim", key[1])
            raise

    async def _apply(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
        ctx: BotContext,
        bot: Bot | None,
        key: tuple[int, int] | None,
        out: Replies,
        failed: _Failure,
    ) -> Any:
        async with ctx.db.session() as session:
            if key is not None:
                if not await claim_update(session, *key, ctx.clock.now()):
                    self.duplicates += 1
                    log.info("update %s of bot %s was applied already", key[1], key[0])
                    return None
                track_claim(session, _CLAIM)
            data["session"], data["out"] = session, out
            tg_user: TgUser | None = data.get("event_from_user")
            if tg_user is not None and not tg_user.is_bot:
                user = await get_or_create_user(
                    session,
                    "telegram",
                    str(tg_user.id),
                    ctx.clock.now(),
                    username=tg_user.username,
                    first_name=tg_user.first_name,
                    language=pick_language(None, tg_user.language_code),
                )
                data["user"] = user
                data["lang"] = pick_language(user.language)
            else:
                data["user"] = None
                data["lang"] = "en"
            try:
                token = _IN_HANDLER.set(True)
                try:
                    result = await handler(event, data)
                finally:
                    _IN_HANDLER.reset(token)
                if (
                    key is not None
                    and claim_state(session, _CLAIM) == "lost"
                    and not await claim_update(session, *key, ctx.clock.now())
                ):
                    # Another replica applied it while ours was undone: say nothing twice.
                    await session.rollback()
                    self.duplicates += 1
                    return None
                staged = self.sender.stage(session, out, ctx.clock.now())
                await session.commit()
            except Exception:
                # Only a commit of the handler's own can have made the claim durable here:
                # the final commit either succeeded (no exception) or did not happen.
                failed.committed_claim = claim_state(session, _CLAIM) == "committed"
                raise
        # What the handler queued goes out now; its replies are held back by their lease.
        ctx.wake_outbox()
        if staged and bot is not None:
            await self.sender.deliver(bot, ctx.db, ctx.clock.now(), staged)
        return result
