"""The playground page: a small Telegram-like chat client for the emulator, in a browser.

GET /playground serves plain HTML, CSS and JavaScript from web/ (no build step, nothing
from the internet). The page acts as any user of the emulated world: it writes and presses
buttons through the control API (/control/messages, /control/callbacks, /control/join) and
reads what it shows through the JSON API below, which looks at the world the way one user
sees it (their private chat with the bot, the groups they are in).

    GET  /playground/api/state?user_id=   -> {bot, users, chats (of that user), commands, clock}
    GET  /playground/api/chats/{chat_id}?user_id=
                                          -> {chat, messages}: messages rendered for the page
    POST /playground/api/users {first_name, language_code?} -> user (a fresh id)
    POST /playground/api/groups {title, creator_id} -> chat (a supergroup; the bot is made its
         admin with can_invite_users and can_restrict_members, as an owner would)
    GET  /playground/api/invite?link=     -> what opening the link offers: {offer: join |
         request | invalid | revoked | expired, title, chat_id}
    POST /playground/api/clock {days?, hours?, seconds?} -> moves the emulator's clock and,
         through `PlaygroundHooks.advance`, whatever the wiring lends (the service's clock and
         its sweeps) -> {offset_seconds, now, service}
    Paying an invoice message or a Telegram Stars invoice link: playground_pay.py.

Errors are {"error": "..."} with 400/403/404, as in the control API.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import membership, playground_pay
from .errors import ControlError
from .state import Chat, StoredMessage, User
from .world import World

if TYPE_CHECKING:
    from .server import TelegramEmulator

# Moves the rest of the world (the service under test) forward by `seconds` and answers what
# that did, e.g. {"reminded": 1, "removed": 0}.
AdvanceHook = Callable[[float], Awaitable[dict[str, Any]]]

STATIC = {"playground.css": "text/css", "playground.js": "text/javascript"}
FIRST_NEW_USER = 1001
FIRST_NEW_GROUP = -1001000000001
MAX_ADVANCE_SECONDS = 3 * 366 * 24 * 3600


class PlaygroundHooks:
    """What the wiring lends the page. Standalone (`python -m sandbox.telegram`) there is
    nothing to lend and the clock control moves only the emulator's clock."""

    def __init__(self) -> None:
        self.advance: AdvanceHook | None = None
        # Other pages of the local setup the person playing needs (label, URL): the local
        # WeChat Pay / Alipay hosts' sandbox phones, where a QR order is "scanned and paid".
        self.links: list[tuple[str, str]] = []


def _ok(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _static(name: str) -> str:
    return resources.files(__package__).joinpath("web", name).read_text("utf-8")


def _name(user: User | None) -> str:
    if user is None:
        return "someone"
    return " ".join(p for p in (user.first_name, user.last_name) if p)


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ControlError(400, f"{name} must be an integer") from None


def _service_text(world: World, stored: StoredMessage) -> str:
    """Service messages as the app shows them ("Bob joined the group")."""
    data = stored.data
    actor = world.users.get(stored.sender_id)
    if "new_chat_members" in data:
        names = ", ".join(_name(world.users.get(u["id"])) for u in data["new_chat_members"])
        ids = {u["id"] for u in data["new_chat_members"]}
        if stored.sender_id in ids:
            return f"{names} joined the group"
        if actor is not None and actor.is_bot:
            return f"{names} joined the group (request approved by {_name(actor)})"
        return f"{_name(actor)} added {names}"
    if "left_chat_member" in data:
        gone = _name(world.users.get(data["left_chat_member"]["id"]))
        if data["left_chat_member"]["id"] == stored.sender_id:
            return f"{gone} left the group"
        return f"{_name(actor)} removed {gone}"
    if "successful_payment" in data:
        p = data["successful_payment"]
        return f"{_name(actor)} paid {_amount(p)}"
    if "refunded_payment" in data:
        return f"Refunded {_amount(data['refunded_payment'])}"
    return "service message"


def _amount(payment: dict[str, Any]) -> str:
    # The app writes Stars as a number and a star.
    if payment["currency"] == "XTR":
        return f"{payment['total_amount']} ⭐"
    return f"{payment['total_amount']} {payment['currency']}"


def _buttons(stored: StoredMessage) -> list[list[dict[str, str]]]:
    rows = ((stored.data.get("reply_markup") or {}).get("inline_keyboard")) or []
    out = []
    for row in rows:
        shown = []
        for b in row:
            button = {"text": str(b.get("text", ""))}
            for key in ("callback_data", "url"):
                if key in b:
                    button[key] = str(b[key])
            if b.get("pay"):
                button["pay"] = "true"
            shown.append(button)
        out.append(shown)
    return out


def render_message(world: World, stored: StoredMessage, viewer: int) -> dict[str, Any]:
    data = stored.data
    sender = world.users.get(stored.sender_id)
    out: dict[str, Any] = {
        "id": stored.message_id,
        "date": data.get("date"),
        "mine": stored.sender_id == viewer,
        "from": {
            "id": stored.sender_id,
            "name": _name(sender),
            "is_bot": bool(sender and sender.is_bot),
        },
        "edited": bool(data.get("edit_date")),
    }
    if stored.kind == "service":
        out["service"] = _service_text(world, stored)
        return out
    out["text"] = data.get("text", data.get("caption")) or ""
    out["entities"] = data.get("entities", data.get("caption_entities", []))
    out["buttons"] = _buttons(stored)
    if stored.kind == "photo" and stored.file_id is not None:
        largest = (data.get("photo") or [{}])[-1]
        # Its size, so the page lays the image out before it loads (and keeps a
        # conversation scrolled to its newest message).
        out["photo"] = {
            "url": f"/control/files/{stored.file_id}",
            "width": largest.get("width", 1),
            "height": largest.get("height", 1),
        }
    if stored.kind == "document" and stored.file_id is not None:
        f = world.files[stored.file_id]
        out["document"] = {
            "name": f.file_name,
            "size": len(f.content),
            "url": f"/control/files/{f.file_id}",
        }
    if stored.invoice is not None:
        invoice = stored.invoice
        out["invoice"] = {
            k: invoice.get(k) for k in ("title", "description", "currency", "total_amount")
        }
        # Paid by this chat's user: the app turns the Pay button into a receipt.
        out["invoice"]["paid"] = any(
            p["chat_id"] == stored.chat_id and p["invoice_payload"] == invoice["payload"]
            for p in world.payments.values()
        )
    return out


def _status(world: World, chat: Chat, user_id: int) -> str:
    if user_id in chat.join_requests:
        return "requested"
    return world.member(chat, user_id).status


def _about(world: World, user: User) -> str:
    """Who a user is in this world, for the user picker: owner of, member of, or nobody."""
    owns, member_of = [], []
    for chat in world.chats.values():
        if chat.private_user is not None:
            continue
        status = world.member(chat, user.id).status
        if status == "creator":
            owns.append(chat.title or str(chat.id))
        elif world.member(chat, user.id).present:
            member_of.append(chat.title or str(chat.id))
    if owns:
        return "owns " + ", ".join(owns)
    if member_of:
        return "member of " + ", ".join(member_of)
    return "not in any group"


def _commands(world: World, user: User, private: bool) -> list[dict[str, str]]:
    """The bot's command menu for that chat (the most specific scope that is set)."""
    bot = next(iter(world.bots.values()), None)
    if bot is None:
        return []
    lang = (user.language_code or "").split("-")[0]
    scopes = ["all_private_chats", "default"] if private else ["all_group_chats", "default"]
    for scope in scopes:
        for code in (lang, ""):
            key = json.dumps({"type": scope}, sort_keys=True) + "|" + code
            if key in bot.commands:
                return [
                    {"command": str(c.get("command")), "description": str(c.get("description", ""))}
                    for c in bot.commands[key]
                ]
    return []


def setup_routes(app: web.Application, emulator: TelegramEmulator) -> None:
    def world() -> World:
        return emulator.world  # read per request: reset() swaps the world

    def route(
        handler: Callable[[web.Request], Awaitable[Any]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                result = await handler(request)
            except ControlError as exc:
                return _ok({"error": exc.message}, exc.status)
            if isinstance(result, web.StreamResponse):
                return result
            return _ok(result)

        return wrapped

    async def body_of(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            raise ControlError(400, "body must be JSON") from None
        if not isinstance(body, dict):
            raise ControlError(400, "body must be a JSON object")
        return body

    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=_static("playground.html"),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(
            text=_static(name), content_type=STATIC[name], headers={"Cache-Control": "no-store"}
        )

    async def state(request: web.Request) -> Any:
        w = world()
        bot = next(iter(w.bots.values()), None)
        users = [u for u in w.users.values() if not u.is_bot]
        out: dict[str, Any] = {
            "bot": None
            if bot is None
            else {"id": bot.id, "name": _name(bot.user), "username": bot.user.username},
            "users": [
                {
                    "id": u.id,
                    "name": _name(u),
                    "language_code": u.language_code,
                    "about": _about(w, u),
                }
                for u in sorted(users, key=lambda u: u.id)
            ],
            "clock": {"now": w.now(), "offset_seconds": w.clock.offset},
            "links": [{"label": label, "url": url} for label, url in emulator.playground.links],
            "chats": [],
            "commands": {"private": [], "group": []},
        }
        raw = request.query.get("user_id")
        if raw:
            user = w.control_user(raw)
            chats: list[dict[str, Any]] = []
            if bot is not None:
                mine = w.chats[user.id]
                last = max(mine.messages.values(), key=lambda m: m.message_id, default=None)
                chats.append(
                    {
                        "id": user.id,
                        "kind": "bot",
                        "title": _name(bot.user),
                        "status": "member",
                        "last": last.message_id if last else 0,
                    }
                )
            for chat in w.chats.values():
                if chat.private_user is not None or chat.type == "channel":
                    continue
                status = _status(w, chat, user.id)
                if status in ("creator", "administrator", "member", "restricted", "requested"):
                    last = max(chat.messages.values(), key=lambda m: m.message_id, default=None)
                    chats.append(
                        {
                            "id": chat.id,
                            "kind": "group",
                            "title": chat.title,
                            "status": status,
                            "last": last.message_id if last else 0,
                            "members": sum(
                                1 for uid in chat.members if w.member(chat, uid).present
                            ),
                        }
                    )
            out["chats"] = chats
            out["commands"] = {
                "private": _commands(w, user, True),
                "group": _commands(w, user, False),
            }
        return out

    async def chat_view(request: web.Request) -> Any:
        w = world()
        user = w.control_user(request.query.get("user_id"))
        chat = w.control_chat(request.match_info["chat_id"])
        if chat.private_user is not None:
            if chat.id != user.id:
                raise ControlError(403, "that is another user's private chat")
            bot = next(iter(w.bots.values()), None)
            info = {
                "id": chat.id,
                "kind": "bot",
                "status": "member",
                "title": _name(bot.user) if bot else "bot",
                "subtitle": f"@{bot.user.username}" if bot else "",
            }
        else:
            status = _status(w, chat, user.id)
            present = sum(1 for uid in chat.members if w.member(chat, uid).present)
            info = {
                "id": chat.id,
                "kind": "group",
                "status": status,
                "title": chat.title,
                "subtitle": f"{present} members",
            }
            if not w.member(chat, user.id).present:
                # As in the app: a private group shows nothing to someone who is not in it.
                return {"chat": info, "messages": []}
        messages = [
            render_message(w, m, user.id)
            for m in sorted(chat.messages.values(), key=lambda m: m.message_id)
            if not m.deleted
        ]
        return {"chat": info, "messages": messages}

    async def add_user(request: web.Request) -> Any:
        w, body = world(), await body_of(request)
        first_name = str(body.get("first_name") or "").strip()
        if not first_name or len(first_name) > 64:
            raise ControlError(400, "first_name: 1 to 64 characters")
        language = str(body.get("language_code") or "en").strip() or "en"
        new_id = max([FIRST_NEW_USER - 1, *(u for u in w.users if u not in w.bots)]) + 1
        user = w.add_user({"id": new_id, "first_name": first_name, "language_code": language})
        return {
            "id": user.id,
            "name": _name(user),
            "language_code": user.language_code,
            "about": _about(w, user),
        }

    async def add_group(request: web.Request) -> Any:
        w, body = world(), await body_of(request)
        title = str(body.get("title") or "").strip()
        if not title or len(title) > 128:
            raise ControlError(400, "title: 1 to 128 characters")
        creator = w.control_user(body.get("creator_id"))
        chat_id = min([FIRST_NEW_GROUP + 1, *(c for c in w.chats if c < 0)]) - 1
        chat = w.add_chat(
            {"id": chat_id, "type": "supergroup", "title": title, "creator_id": creator.id}
        )
        bot = next(iter(w.bots.values()), None)
        if bot is not None:
            membership.promote(
                w,
                chat,
                bot.id,
                {"can_invite_users": True, "can_restrict_members": True},
                creator.id,
            )
        return {"id": chat.id, "title": chat.title}

    async def invite(request: web.Request) -> Any:
        w = world()
        url = request.query.get("link", "").strip()
        found = w.find_link(url)
        if found is None:
            return {"offer": "invalid", "title": None, "chat_id": None}
        chat, link = found
        if link.is_revoked:
            offer = "revoked"
        elif link.expire_date and link.expire_date <= w.now():
            offer = "expired"
        else:
            offer = "request" if link.creates_join_request else "join"
        return {"offer": offer, "title": chat.title, "chat_id": chat.id}

    async def clock(request: web.Request) -> Any:
        w = world()
        service: dict[str, Any] | None = None
        if request.method == "POST":
            body = await body_of(request)
            try:
                seconds = (
                    float(body.get("days") or 0) * 86400
                    + float(body.get("hours") or 0) * 3600
                    + float(body.get("seconds") or 0)
                )
            except (TypeError, ValueError):
                raise ControlError(400, "days, hours and seconds must be numbers") from None
            if not 0 < seconds <= MAX_ADVANCE_SECONDS:
                raise ControlError(
                    400, "move the clock forward by a positive amount (three years at most)"
                )
            w.clock.advance(seconds)
            hook = emulator.playground.advance
            if hook is not None:
                service = await hook(seconds)
        return {"now": w.now(), "offset_seconds": w.clock.offset, "service": service}

    r = app.router
    r.add_get("/playground", page)
    r.add_get("/playground/static/{name}", static)
    r.add_get("/playground/api/state", route(state))
    r.add_get("/playground/api/chats/{chat_id}", route(chat_view))
    r.add_post("/playground/api/users", route(add_user))
    r.add_post("/playground/api/groups", route(add_group))
    r.add_get("/playground/api/invite", route(invite))
    r.add_get("/playground/api/clock", route(clock))
    r.add_post("/playground/api/clock", route(clock))
    playground_pay.setup_routes(app, world, route, body_of)
