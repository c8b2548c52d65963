"""Control API for channels (/control/...): an admin posts, a user forwards a post to the
bot, Telegram renews a Star subscription, and the test reads the subscriptions. Documented
in the package docstring."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import channels
from .control import _body, _int, _ok, _opt_int, message_record
from .errors import ControlError
from .world import World

if TYPE_CHECKING:
    from .server import TelegramEmulator


def setup_routes(app: web.Application, emulator: TelegramEmulator) -> None:
    def world() -> World:
        return emulator.world  # read per request: reset() swaps the world

    def route(
        handler: Callable[[web.Request], Awaitable[Any]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return _ok(await handler(request))
            except ControlError as exc:
                return _ok({"error": exc.message}, exc.status)

        return wrapped

    async def post(request: web.Request) -> Any:
        w, body = world(), await _body(request)
        chat = w.control_chat(request.match_info["chat_id"])
        author = w.control_user(body.get("from_id"))
        stored = channels.post(w, chat, author, str(body.get("text", "")))
        return message_record(w, stored)

    async def forward(request: web.Request) -> Any:
        w, body = world(), await _body(request)
        user = w.control_user(body.get("from_id"))
        bot = w.control_bot(_opt_int(body.get("bot_id"), "bot_id"))
        chat = w.control_chat(body.get("from_chat_id"))
        stored = channels.forward_to_bot(
            w, user, bot, chat, _int(body.get("message_id"), "message_id")
        )
        return {"message_id": stored.message_id, "chat_id": stored.chat_id}

    async def renew(request: web.Request) -> Any:
        w, body = world(), await _body(request)
        chat = w.control_chat(body.get("chat_id"))
        user = w.control_user(body.get("user_id"))
        return channels.renew(w, chat, user.id).to_json()

    async def subscriptions(request: web.Request) -> Any:
        w = world()
        channels.expire_subscriptions(w)
        return [s.to_json() for s in w.channel_subscriptions.values()]

    r = app.router
    r.add_post("/control/chats/{chat_id}/posts", route(post))
    r.add_post("/control/forwards", route(forward))
    r.add_post("/control/channel_subscriptions/renew", route(renew))
    r.add_get("/control/channel_subscriptions", route(subscriptions))
