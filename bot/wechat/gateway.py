"""WechatGateway: the ChatGateway for WeChat rooms, over a python-wechaty connection.

The worker (bot/wechat/worker.py) hands it the connection when the bot logs in and takes it
away when the connection drops; meanwhile every call raises TransientError, so the outbox
puts the row back. Calls go to the puppet by id (`bot.puppet`), not through python-wechaty's
Contact/Room objects: those load a payload per member and cache it per connection, where a
delivery needs one call.

Every message, add and removal waits for the rate budget (bot/gateway.RateLimiter, the same
buckets as Telegram's): WeChat publishes no limits and restricts accounts that send like
machines, so the budgets in [wechat] are slow on purpose (gatepass/config.WechatConfig).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from billing.qr_image import qr_png
from bot.gateway import RateLimiter
from bot.i18n import t
from bot.wechat.compat import FileBox, Wechaty, WechatyPuppetError
from membership.gateway import (
    AddOutcome,
    Button,
    RejectedError,
    RetryAfter,
    TransientError,
)
from membership.lapse import BUY_LINK

T = TypeVar("T")
log = logging.getLogger(__name__)

# WeChat users are Chinese unless they chose English.
DEFAULT_LANGUAGE = "zh"
# A puppet that says "too many" (WeCom's frequency control) is given this long.
THROTTLED_SECONDS = 60.0
# Refusals no retry changes: a wrong id, a room the bot cannot manage.
_REFUSED = frozenset(
    {
        Status.INVALID_ARGUMENT,
        Status.NOT_FOUND,
        Status.PERMISSION_DENIED,
        Status.FAILED_PRECONDITION,
        Status.UNIMPLEMENTED,
        Status.ALREADY_EXISTS,
    }
)


def is_room(chat_id: str) -> bool:
    """WeChat room ids carry an "@" ("...@chatroom"); contact ids (wxid_...) do not."""
    return "@" in chat_id


def join_code_name(room_id: str) -> str:
    return f"join-{room_id.split('@')[0]}.png"


async def call(aw: Awaitable[T]) -> T:
    """Run a puppet call, turning gRPC's and python-wechaty's errors into the gateway's.

    A failed call over gRPC arrives as GRPCError with a status: the puppets put their own
    failures (a full room, an unknown contact) under UNKNOWN, which we retry with backoff
    unless the caller knows better (add_member); a dropped connection is transient."""
    try:
        return await aw
    except GRPCError as e:
        if e.status == Status.RESOURCE_EXHAUSTED:
            raise RetryAfter(THROTTLED_SECONDS, f"puppet throttled: {e.message}") from e
        if e.status in _REFUSED:
            raise RejectedError(f"{e.status.name}: {e.message}") from e
        raise TransientError(f"{e.status.name}: {e.message}") from e
    except (StreamTerminatedError, WechatyPuppetError, ConnectionError, OSError, TimeoutError) as e:
        raise TransientError(f"{type(e).__name__}: {e}") from e


def render(key: str, params: dict[str, Any], language: str, buttons: list[Button] | None) -> str:
    """A catalog message as WeChat text: WeChat has no buttons, so a link button becomes a
    line "label: url", the renew button a line saying what to reply, and buttons that only
    call back to the bot (Telegram's inline actions) are left out."""
    lines = [t(key, language, **params)]
    for b in buttons or []:
        if b.url == BUY_LINK:
            lines.append(t("wechat_renew_line", language, **b.params))
        elif b.url:
            lines.append(f"{t(b.text_key, language, **b.params)}: {b.url}")
    return "\n".join(lines)


class WechatGateway:
    platform = "wechat"

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.bot: Wechaty | None = None  # set while connected and logged in (the worker)
        self.throttled = 0  # RESOURCE_EXHAUSTED answers despite the limiter

    @property
    def _puppet(self) -> Any:
        bot = self.bot
        if bot is None or bot._puppet is None:
            raise TransientError("not connected to the WeChat puppet service")
        return bot.puppet

    async def _api(
        self, chat: str, request: Callable[[], Awaitable[T]], *, message: bool = False
    ) -> T:
        """One puppet call about one contact or room, inside the rate budget."""
        self._puppet  # noqa: B018 - not connected: put the row back before waiting
        await self.limiter.acquire(chat, group_message=message and is_room(chat))
        try:
            return await call(request())
        except RetryAfter as e:
            self.throttled += 1
            self.limiter.pause(chat, e.seconds)
            log.warning("WeChat throttled calls about %s: waiting %ss", chat, e.seconds)
            raise

    def check_budget(self, chat_id: str) -> None:
        self.limiter.check(chat_id)

    # -- messages ---------------------------------------------------------------------------

    async def send_text(self, chat_id: str, text: str) -> None:
        await self._api(
            chat_id, lambda: self._puppet.message_send_text(chat_id, text), message=True
        )

    async def send_image(self, chat_id: str, png: bytes, name: str) -> None:
        box = FileBox.from_base64(base64.b64encode(png).decode(), name=name)
        await self._api(chat_id, lambda: self._puppet.message_send_file(chat_id, box), message=True)

    async def send(
        self,
        user_id: str,
        key: str,
        params: dict[str, Any],
        language: str | None,
        buttons: list[Button] | None = None,
    ) -> None:
        lang = language or DEFAULT_LANGUAGE
        params = dict(params)
        if "group_id" in params:  # texts that end "buy access here: {buy_link}"
            params.setdefault("buy_link", t("wechat_buy_link", lang))
        await self.send_text(user_id, render(key, params, lang, buttons))

    async def send_prepared(self, chat_id: str, call: dict[str, Any]) -> None:
        """A reply the conversation handler returned (bot/wechat/dispatch.py stored it)."""
        text, image = call.get("text"), call.get("image_base64")
        if isinstance(text, str) and text:
            await self.send_text(chat_id, text)
            return
        if isinstance(image, str) and image:
            try:
                png = base64.b64decode(image, validate=True)
            except ValueError as e:
                raise RejectedError(f"not a stored reply: bad image_base64 ({e})") from e
            await self.send_image(chat_id, png, str(call.get("name") or "image.png"))
            return
        raise RejectedError(f"not a stored reply: {sorted(call)}")

    # -- rooms ------------------------------------------------------------------------------

    async def _members(self, room_id: str) -> list[str]:
        return list(await call(self._puppet.room_members(room_id)))

    async def add_member(self, chat_id: str, user_id: str) -> AddOutcome:
        """Add the buyer to the room; where the room takes no direct add (over 40 members or
        invite confirmation on: the puppet fails room.add), send them the room's join QR code
        instead, which they scan themselves."""
        if user_id in await self._members(chat_id):
            return AddOutcome.ALREADY_MEMBER
        try:
            await self._api(chat_id, lambda: self._puppet.room_add(chat_id, user_id))
        except TransientError as e:
            cause = e.__cause__
            if not (isinstance(cause, GRPCError) and cause.status == Status.UNKNOWN):
                raise
            # The puppet refused the add itself (the connection is fine): invite instead.
            log.info("room %s refused adding %s (%s): sending its join code", chat_id, user_id, e)
            code = await call(self._puppet.room_qr_code(chat_id))
            if not code:
                raise RejectedError(f"room {chat_id} gave no join code") from e
            await self.send_image(user_id, qr_png(code), join_code_name(chat_id))
            return AddOutcome.INVITED
        return AddOutcome.ADDED

    async def remove_member(self, chat_id: str, user_id: str) -> None:
        if user_id not in await self._members(chat_id):
            return  # gone already (left, or removed by the owner): what we wanted
        await self._api(chat_id, lambda: self._puppet.room_delete(chat_id, user_id))

    # -- what WeChat rooms do not have -----------------------------------------------------

    async def create_invite(
        self, chat_id: str, *, name: str, join_request: bool, expire_at: datetime | None
    ) -> str:
        raise RejectedError("WeChat rooms have no invite links: buyers are added (add_member)")

    async def revoke_invite(self, chat_id: str, link: str) -> None:
        raise RejectedError("WeChat rooms have no invite links to revoke")

    async def approve_join(self, chat_id: str, user_id: str) -> None:
        raise RejectedError("WeChat rooms have no join requests")

    async def decline_join(self, chat_id: str, user_id: str) -> None:
        raise RejectedError("WeChat rooms have no join requests")
