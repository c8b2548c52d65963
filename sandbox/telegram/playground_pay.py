"""The playground page pays, as a user does in the app: an invoice message's Pay button, or a
Telegram Stars invoice link (https://t.me/$…) opened from a button.

Both go through the same emulator paths the tests use (interactions.pay_invoice,
stars_control.pay_link): pre_checkout_query, the bot's answer, then successful_payment. The
answer is the outcome the page shows: {"status": "paid" | "declined" | "timeout", ...}, with
the bot's error_message when it refused.

    POST /playground/api/invoices/pay {user_id, chat_id, message_id}
    GET  /playground/api/invoice_link?link=  -> {title, description, currency, total_amount,
         subscription_period}: what the payment sheet shows before paying
    POST /playground/api/invoice_link/pay {user_id, link}
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import interactions, stars_control
from .errors import ControlError
from .stars import InvoiceLink
from .world import World

Route = Callable[[Callable[[web.Request], Awaitable[Any]]], Any]
Body = Callable[[web.Request], Awaitable[dict[str, Any]]]

INVOICE_LINK = re.compile(r"https://t\.me/\$[A-Za-z0-9_-]+")


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ControlError(400, f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ControlError(400, f"{name} must be an integer") from None


def _link(world: World, value: Any) -> InvoiceLink:
    url = str(value or "").strip()
    if not INVOICE_LINK.fullmatch(url):
        raise ControlError(400, "link must be a Telegram invoice link (https://t.me/$…)")
    return world.stars.link(url)  # 404 when no bot made it


def setup_routes(
    app: web.Application, world: Callable[[], World], route: Route, body: Body
) -> None:
    async def pay_invoice(request: web.Request) -> Any:
        w, b = world(), await body(request)
        user = w.control_user(_int(b.get("user_id"), "user_id"))
        chat = w.control_chat(_int(b.get("chat_id"), "chat_id"))
        message_id = _int(b.get("message_id"), "message_id")
        if chat.private_user is None and not w.member(chat, user.id).present:
            raise ControlError(403, f"user {user.id} is not a member of chat {chat.id}")
        return await interactions.pay_invoice(w, user, chat, message_id)

    async def describe_link(request: web.Request) -> Any:
        link = _link(world(), request.query.get("link"))
        return {
            "title": link.title,
            "description": link.description,
            "currency": link.currency,
            "total_amount": link.total_amount,
            "subscription_period": link.subscription_period,
        }

    async def pay_link(request: web.Request) -> Any:
        w, b = world(), await body(request)
        user = w.control_user(_int(b.get("user_id"), "user_id"))
        link = _link(w, b.get("link"))
        return await stars_control.pay_link(w, user.id, link.url)

    r = app.router
    r.add_post("/playground/api/invoices/pay", route(pay_invoice))
    r.add_get("/playground/api/invoice_link", route(describe_link))
    r.add_post("/playground/api/invoice_link/pay", route(pay_link))
