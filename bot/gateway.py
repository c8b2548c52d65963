"""TelegramGateway: the ChatGateway for Telegram, over aiogram's Bot, with the process's
rate limiter in front of every Bot API call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.calls import decode_call
from bot.i18n import t
from bot.responses import RESPONSE_TYPES  # noqa: F401 - held from start-up (see there)
from membership.gateway import (
    AddOutcome,
    BlockedError,
    Button,
    RejectedError,
    RetryAfter,
    TransientError,
)
from membership.lapse import BUY_LINK  # a button URL standing for the deep link to buy again

T = TypeVar("T")
log = logging.getLogger(__name__)
# Telegram's 403 descriptions for a user no message can reach (others, like "bot can't
# initiate conversation with a user", may change once the user writes to the bot).
UNREACHABLE = ("bot was blocked by the user", "user is deactivated")


async def call(aw: Awaitable[T]) -> T:
    """Run a Bot API call, turning aiogram's errors into the gateway's."""
    try:
        return await aw
    except TelegramRetryAfter as e:
        raise RetryAfter(e.retry_after, str(e)) from e
    except TelegramForbiddenError as e:
        if any(why in e.message.lower() for why in UNREACHABLE):
            raise BlockedError(e.message) from e
        raise RejectedError(e.message) from e
    except (TelegramBadRequest, TelegramNotFound) as e:
        raise RejectedError(e.message) from e
    except (TelegramServerError, TelegramNetworkError) as e:
        raise TransientError(str(e)) from e
    except TelegramAPIError as e:
        raise TransientError(str(e)) from e


class _Chat:
    """One chat's bucket: when its last call went out, and the callers queued for it."""

    __slots__ = ("booked", "last", "lock", "waiting")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()  # FIFO: the chat's callers go in the order they came
        self.last = float("-inf")
        self.waiting = 0
        self.booked = float("-inf")  # the last turn handed to a caller sent away for later


class RateLimiter:
    """Token buckets shared by every Bot API call of the process: one global, one per chat.

    Telegram's published limits: about 30 calls/s overall, about 1/s per chat, and 20
    messages/min into one group. The per-chat budget holds for every call about a chat
    (a message to a user; a group's invite links, join requests, bans); a message into a
    group or channel (`group_message=True`) also waits the group budget's longer interval.

    Each bucket holds one token that refills at the budget's rate, so calls go out evenly
    spaced: Telegram counts in sliding windows, and even spacing uses the whole budget without
    ever tripping it, where a burst would. A chat's callers queue in order and each waits for
    the chat's token first and only then for the global one, so a caller waiting for a busy
    chat never holds up the other chats; the chat's next token counts from when its call
    really went out, so the chat's spacing holds whatever the global queue does.

    A chat whose queue is already longer than `max_chat_wait` seconds is not waited for:
    acquire() raises RetryAfter so the outbox puts the row back for later and its worker slot
    goes to other chats. `patient=True` (the second call of a two-step operation, like the
    unban after a ban) always waits.
    """

    def __init__(
        self,
        global_per_second: float,
        per_chat_per_minute: float,
        per_group_per_minute: float = 20.0,
        *,
        max_chat_wait: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if min(global_per_second, per_chat_per_minute, per_group_per_minute) <= 0:
            raise ValueError("rate budgets must be positive")
        self.global_interval = 1.0 / global_per_second
        self.chat_interval = 60.0 / per_chat_per_minute
        self.group_interval = max(self.chat_interval, 60.0 / per_group_per_minute)
        self.max_chat_wait = max_chat_wait
        self._clock, self._sleep = clock, sleep
        self._global_lock = asyncio.Lock()
        self._global_next = float("-inf")  # when the next call may go out
        self._chats: dict[str, _Chat] = {}
        self._since_prune = 0

    async def acquire(
        self, chat: str | None = None, *, group_message: bool = False, patient: bool = False
    ) -> None:
        if chat is None:
            await self._global_turn()
            return
        state = self._state(chat)
        # A group message waits the group interval after the chat's last call of any kind:
        # a little stricter than Telegram's rule, and one bucket per chat is enough.
        interval = self.group_interval if group_message else self.chat_interval
        if not patient:
            self._refuse_if_busy(chat, state, interval)
        state.waiting += 1
        try:
            async with state.lock:
                wait = state.last + interval - self._clock()
                if wait > 0:
                    await self._sleep(wait)
                await self._global_turn()
                state.last = self._clock()
        finally:
            state.waiting -= 1

    def check(self, chat: str, *, group_message: bool = False) -> None:
        """Raise RetryAfter now if a call about `chat` would wait longer than max_chat_wait,
        so a caller can give up before doing any work for it."""
        state = self._state(chat)
        self._refuse_if_busy(
            chat, state, self.group_interval if group_message else self.chat_interval
        )

    def _state(self, chat: str) -> _Chat:
        state = self._chats.get(chat)
        if state is None:
            state = self._chats[chat] = _Chat()
            self._prune()
        return state

    def _refuse_if_busy(self, chat: str, state: _Chat, interval: float) -> None:
        """A caller refused gets a turn of its own further on: after the chat's queue and
        after every turn handed out before. A burst of rows for one chat (a launch: hundreds
        of buyers of one group) is spread over the time the budget needs for them, each row
        coming back once, at its turn, instead of all of them coming back together every
        few seconds to be refused again."""
        now = self._clock()
        wait = max(0.0, state.last + interval - now) + state.waiting * self.chat_interval
        if wait <= self.max_chat_wait:
            return
        turn = max(now + wait, state.booked + self.chat_interval)
        state.booked = turn
        raise RetryAfter(turn - now, f"rate budget: chat {chat} is busy for {turn - now:.1f}s")

    async def _global_turn(self) -> None:
        # One caller at a time, on an evenly spaced timeline. A caller woken a little late
        # (timer slack) keeps the timeline, so the slack does not add up and eat the budget;
        # one woken much later (the event loop stalled on a long commit, or nobody called for
        # a while) starts the timeline again from now, so the callers that were held up go on
        # evenly spaced instead of bursting past Telegram's window all at once.
        async with self._global_lock:
            now = self._clock()
            if self._global_next > now:
                await self._sleep(self._global_next - now)
                now = self._clock()
            late = now - self._global_next
            self._global_next = (
                now if late > self.global_interval / 4 else self._global_next
            ) + self.global_interval

    def pause(self, chat: str | None, seconds: float) -> None:
        """Telegram answered 429: send nothing more to this chat until retry_after."""
        until = self._clock() + seconds
        if chat is None:
            self._global_next = max(self._global_next, until)
            return
        state = self._chats.setdefault(chat, _Chat())
        state.last = max(state.last, until - self.chat_interval)

    def _prune(self) -> None:
        # A chat whose token is back and that nobody waits for is the same as a chat never
        # seen: forget it, so memory follows the chats in use, not every chat ever served.
        self._since_prune += 1
        if self._since_prune < 1000:
            return
        self._since_prune = 0
        now = self._clock()
        self._chats = {
            c: st
            for c, st in self._chats.items()
            if st.waiting or st.last + self.group_interval > now or st.booked > now
        }


def keyboard(
    buttons: list[Button] | None, lang: str | None, buy_link: str | None = None
) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t(b.text_key, lang, **b.params),
                    url=buy_link if b.url == BUY_LINK else b.url,
                    callback_data=b.callback_data,
                )
            ]
            for b in buttons
        ]
    )


class TelegramGateway:
    platform = "telegram"

    def __init__(
        self, bot: Bot, bot_username: str, clock: Any, limiter: RateLimiter | None = None
    ) -> None:
        self.bot, self.bot_username, self.clock = bot, bot_username, clock
        # Within Telegram's published limits (30/s overall, ~1/s per chat, 20/min in a group).
        self.limiter = limiter or RateLimiter(25, 50, 20)
        self.throttled = 0  # 429s Telegram answered despite the limiter

    async def _api(
        self,
        chat_id: int,
        request: Callable[[], Awaitable[T]],
        *,
        message: bool = False,
        patient: bool = False,
    ) -> T:
        """One Bot API call about one chat, inside the rate budget."""
        chat = str(chat_id)
        # Chat ids of groups and channels are negative; users' are positive.
        await self.limiter.acquire(chat, group_message=message and chat_id < 0, patient=patient)
        try:
            return await call(request())
        except RetryAfter as e:
            self.throttled += 1
            self.limiter.pause(chat, e.seconds)
            log.warning("Telegram 429 for chat %s: retry after %ss", chat, e.seconds)
            raise

    def check_budget(self, chat_id: str) -> None:
        self.limiter.check(str(chat_id))

    def buy_link(self, group_id: object) -> str:
        return f"https://t.me/{self.bot_username}?start=g_{group_id}"

    async def create_invite(
        self, chat_id: str, *, name: str, join_request: bool, expire_at: datetime | None
    ) -> str:
        # Telegram refuses member_limit on join-request links; a single-use link gets 1.
        link = await self._api(
            int(chat_id),
            lambda: self.bot.create_chat_invite_link(
                chat_id=int(chat_id),
                name=name[:32],
                expire_date=expire_at,
                creates_join_request=join_request or None,
                member_limit=None if join_request else 1,
            ),
        )
        return link.invite_link

    async def revoke_invite(self, chat_id: str, link: str) -> None:
        await self._api(
            int(chat_id),
            lambda: self.bot.revoke_chat_invite_link(chat_id=int(chat_id), invite_link=link),
        )

    async def approve_join(self, chat_id: str, user_id: str) -> None:
        await self._api(
            int(chat_id),
            lambda: self.bot.approve_chat_join_request(chat_id=int(chat_id), user_id=int(user_id)),
        )

    async def decline_join(self, chat_id: str, user_id: str) -> None:
        await self._api(
            int(chat_id),
            lambda: self.bot.decline_chat_join_request(chat_id=int(chat_id), user_id=int(user_id)),
        )

    async def add_member(self, chat_id: str, user_id: str) -> AddOutcome:
        """A bot cannot add a user to a Telegram group: access goes by invite link."""
        raise RejectedError("Telegram bots cannot add members: invite links only")

    async def remove_member(self, chat_id: str, user_id: str) -> None:
        # Ban then unban: removes without a lasting ban, so they can come back after paying.
        # The ban's own until_date (1 h, inside Telegram's 30 s..366 d window) lifts it even
        # if the unban below never lands.
        until = self.clock.now() + timedelta(hours=1)
        await self._api(
            int(chat_id),
            lambda: self.bot.ban_chat_member(
                chat_id=int(chat_id), user_id=int(user_id), until_date=until
            ),
        )
        # patient: once banned, the unban must follow even if the chat's queue is long.
        await self._api(
            int(chat_id),
            lambda: self.bot.unban_chat_member(
                chat_id=int(chat_id), user_id=int(user_id), only_if_banned=True
            ),
            patient=True,
        )

    async def send(
        self,
        user_id: str,
        key: str,
        params: dict[str, Any],
        language: str | None,
        buttons: list[Button] | None = None,
    ) -> None:
        params = dict(params)
        if "group_id" in params:
            params.setdefault("buy_link", self.buy_link(params["group_id"]))
        await self._api(
            int(user_id),
            lambda: self.bot.send_message(
                chat_id=int(user_id),
                text=t(key, language, **params),
                reply_markup=keyboard(buttons, language, params.get("buy_link")),
            ),
            message=True,
        )

    async def send_prepared(self, chat_id: str, call: dict[str, Any]) -> None:
        """A reply a handler staged (bot/replies.py) that could not go out at once."""
        try:
            method = decode_call(call)
        except (ValueError, KeyError, TypeError) as e:  # a row no retry can fix
            raise RejectedError(f"not a stored reply: {e}") from e
        await self._api(int(chat_id), lambda: self.bot(method), message=True)
