"""The control API (/control/...): JSON in, JSON out. It plays the users, the group owners and
the test's eyes. Endpoints are documented in sandbox/telegram/__init__.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import channels, interactions, membership, stars, stars_control
from .errors import ApiError, ControlError
from .guard import make_fault
from .state import Chat, StoredMessage
from .world import World

if TYPE_CHECKING:
    from .server import TelegramEmulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _ok(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise ControlError(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise ControlError(400, "body must be a JSON object")
    return body


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ControlError(400, f"{name} must be an integer") from None


def _opt_int(value: Any, name: str) -> int | None:
    return None if value in (None, "") else _int(value, name)


def message_record(world: World, stored: StoredMessage) -> dict[str, Any]:
    """What a test reads about a message: the Bot API Message plus what Telegram keeps
    client-side (any reply keyboard, the raw text, a document's bytes, invoice parameters)."""
    data = stored.data
    record: dict[str, Any] = {
        "message_id": stored.message_id,
        "chat_id": stored.chat_id,
        "sender_id": stored.sender_id,
        "kind": stored.kind,
        "date": data["date"],
        "text": data.get("text", data.get("caption")),
        "entities": data.get("entities", []),
        "raw_text": stored.raw_text,
        "parse_mode": stored.parse_mode,
        "reply_markup": stored.reply_markup,
        "edit_date": data.get("edit_date"),
        "deleted": stored.deleted,
        "message": data,
    }
    if stored.file_id is not None:
        stored_file = world.files[stored.file_id]
        # A photo's record names its largest size (the file a client downloads).
        record["photo" if stored.kind == "photo" else "document"] = {
            "file_id": stored_file.file_id,
            "file_name": stored_file.file_name,
            "mime_type": stored_file.mime_type,
            "size": len(stored_file.content),
            "content_b64": base64.b64encode(stored_file.content).decode(),
            "caption": data.get("caption"),
        }
    if stored.invoice is not None:
        record["invoice"] = stored.invoice
    return record


def setup_routes(app: web.Application, emulator: TelegramEmulator) -> None:
    def world() -> World:
        return emulator.world  # read per request: reset() swaps the world

    def route(handler: Callable[[web.Request], Awaitable[Any]]) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                result = await handler(request)
            except ControlError as exc:
                return _ok({"error": exc.message}, exc.status)
            if isinstance(result, web.StreamResponse):
                return result
            return _ok(result)

        return wrapped

    def chat_of(request: web.Request) -> Chat:
        return world().control_chat(request.match_info["chat_id"])

    # --- setup ------------------------------------------------------------------------------

    async def reset(request: web.Request) -> Any:
        await emulator.reset()
        return {"ok": True}

    async def create_bot(request: web.Request) -> Any:
        body = await _body(request)
        bot = world().register_bot(
            str(body.get("token", "")),
            username=body.get("username"),
            first_name=body.get("first_name"),
            can_read_all_group_messages=body.get("can_read_all_group_messages"),
        )
        return bot.get_me()

    async def get_bot(request: web.Request) -> Any:
        bot = world().control_bot(_int(request.match_info["bot_id"], "bot_id"))
        return {
            "user": bot.get_me(),
            "webhook_url": bot.webhook_url,
            "allowed_updates": bot.updates.allowed_list(),
            "pending_updates": len(bot.updates.pending),
            "dropped_updates": bot.updates.dropped,
            "commands": bot.commands,
            "started_by": sorted(bot.started_by),
            "blocked_by": sorted(bot.blocked_by),
        }

    async def create_user(request: web.Request) -> Any:
        return world().add_user(await _body(request)).to_api()

    async def create_chat(request: web.Request) -> Any:
        return world().add_chat(await _body(request)).to_api()

    async def get_chat(request: web.Request) -> Any:
        w, chat = world(), chat_of(request)
        return {
            **chat.to_api(),
            "members": {str(uid): w.member(chat, uid).status for uid in list(chat.members)},
        }

    async def promote(request: web.Request) -> Any:
        w, chat, body = world(), chat_of(request), await _body(request)
        user = w.control_user(body.get("user_id"))
        rights = body.get("rights")
        if rights is None:
            rights = {
                "can_manage_chat": True,
                "can_invite_users": True,
                "can_restrict_members": True,
                "can_delete_messages": True,
            }
        if not isinstance(rights, dict):
            raise ControlError(400, "rights must be an object of booleans")
        member = membership.promote(
            w,
            chat,
            user.id,
            {k: bool(v) for k, v in rights.items()},
            _opt_int(body.get("by"), "by"),
        )
        return member.to_api(user, chat.type)

    async def demote(request: web.Request) -> Any:
        w, chat = world(), chat_of(request)
        user = w.control_user(request.match_info["user_id"])
        member = membership.demote(w, chat, user.id, _opt_int(request.query.get("by"), "by"))
        return member.to_api(user, chat.type)

    async def add_member(request: web.Request) -> Any:
        w, chat, body = world(), chat_of(request), await _body(request)
        user = w.control_user(body.get("user_id"))
        by = _opt_int(body.get("by"), "by")
        if by is not None:
            w.control_user(by)
        return membership.add_member(w, chat, user.id, by).to_api(user, chat.type)

    async def remove_member(request: web.Request) -> Any:
        w, chat = world(), chat_of(request)
        user = w.control_user(request.match_info["user_id"])
        membership.leave(w, chat, user.id)
        return {"status": "left"}

    async def get_member(request: web.Request) -> Any:
        w, chat = world(), chat_of(request)
        user = w.control_user(request.match_info["user_id"])
        member = w.member(chat, user.id)
        return {
            "status": member.status,
            "member": member.to_api(user, chat.type),
            "joined_via": member.joined_via,
        }

    # --- what the bot sent / what exists ----------------------------------------------------

    async def messages(request: web.Request) -> Any:
        w, chat, q = world(), chat_of(request), request.query
        since = _opt_int(q.get("since"), "since") or 0
        bot_id = _opt_int(q.get("bot_id"), "bot_id")
        everyone = q.get("sender") == "all"
        include_deleted = q.get("include_deleted", "").lower() in ("1", "true", "yes")
        out = []
        for stored in sorted(chat.messages.values(), key=lambda m: m.message_id):
            if stored.message_id <= since or (stored.deleted and not include_deleted):
                continue
            if not everyone and stored.sender_id not in w.bots:
                continue
            if bot_id is not None and stored.sender_id != bot_id:
                continue
            out.append(message_record(w, stored))
        return out

    async def invite_links(request: web.Request) -> Any:
        w, chat = world(), chat_of(request)
        return [
            {
                **link.to_api(chat, w.users, None),
                "creator_id": link.creator_id,
                "created_at": link.created_at,
                "joined_count": w.link_usage(chat, link),
            }
            for link in chat.links.values()
        ]

    async def create_invite_link(request: web.Request) -> Any:
        w, chat, body = world(), chat_of(request), await _body(request)
        creator = w.control_user(body.get("creator_id"))
        if not w.member(chat, creator.id).right("can_invite_users"):
            raise ControlError(403, f"user {creator.id} may not create links in {chat.id}")
        fields = {
            "name": body.get("name"),
            "expire_date": _opt_int(body.get("expire_date"), "expire_date"),
            "member_limit": _opt_int(body.get("member_limit"), "member_limit"),
            "creates_join_request": bool(body.get("creates_join_request")),
        }
        try:
            link = membership.create_link(w, chat, creator.id, fields)
        except ApiError as exc:  # the same refusal the Bot API gives, reported to the test
            raise ControlError(400, exc.description) from None
        return link.to_api(chat, w.users, None)

    async def join_requests(request: web.Request) -> Any:
        chat = chat_of(request)
        return [
            {"user_id": r.user_id, "date": r.date, "invite_link": r.invite_link}
            for r in chat.join_requests.values()
        ]

    # --- users acting -----------------------------------------------------------------------

    async def send_message(request: web.Request) -> Any:
        w, body = world(), await _body(request)
        user = w.control_user(body.get("from_id"))
        chat_id = _opt_int(body.get("chat_id"), "chat_id")
        chat = w.control_chat(chat_id if chat_id is not None else user.id)
        bot = w.control_bot(_opt_int(body.get("bot_id"), "bot_id")) if chat.private_user else None
        stored = interactions.user_message(
            w,
            user,
            chat,
            str(body.get("text", "")),
            bot=bot,
            reply_to=_opt_int(body.get("reply_to_message_id"), "reply_to_message_id"),
        )
        return {"message_id": stored.message_id, "chat_id": chat.id}

    async def press_button(request: web.Request) -> Any:
        w, body = world(), await _body(request)
        user = w.control_user(body.get("from_id"))
        chat_id = _opt_int(body.get("chat_id"), "chat_id")
        chat = w.control_chat(chat_id if chat_id is not None else user.id)
        query_id = interactions.press_button(
            w, user, chat, _int(body.get("message_id"), "message_id"), str(body.get("data", ""))
        )
        return {"callback_query_id": query_id}

    async def callback(request: web.Request) -> Any:
        record = world().callbacks.get(request.match_info["query_id"])
        if record is None:
            raise ControlError(404, "no such callback query")
        return record.to_json()

    async def join(request: web.Request) -> Any:
        w, body = world(), await _body(request)
        user = w.control_user(body.get("user_id"))
        result, chat = membership.join_by_link(w, user.id, str(body.get("invite_link", "")))
        return {"result": result, "chat_id": chat.id if chat else None}

    async def block(request: web.Request) -> Any:
        w, body = world(), await _body(request)
        user = w.control_user(request.match_info["user_id"])
        bot = w.control_bot(_opt_int(body.get("bot_id"), "bot_id"))
        interactions.set_blocked(w, bot, user, request.match_info["action"] == "block")
        return {"blocked": user.id in bot.blocked_by}

    async def pay(request: web.Request) -> Any:
        w, body = world(), await _body(request)
        user = w.control_user(body.get("user_id"))
        chat_id = _opt_int(body.get("chat_id"), "chat_id")
        chat = w.control_chat(chat_id if chat_id is not None else user.id)
        timeout = float(body.get("timeout", interactions.PRE_CHECKOUT_TIMEOUT))
        return await interactions.pay_invoice(
            w,
            user,
            chat,
            _int(body.get("message_id"), "message_id"),
            timeout,
            deliver=body.get("deliver", True) is not False,
        )

    async def payments(request: web.Request) -> Any:
        return [{"telegram_payment_charge_id": k, **v} for k, v in world().payments.items()]

    # --- observing and bending the API ------------------------------------------------------

    async def calls(request: web.Request) -> Any:
        q = request.query
        wanted = q.get("method", "").lower()
        bot_id = _opt_int(q.get("bot_id"), "bot_id")
        since = _opt_int(q.get("since"), "since") or 0
        return [
            c.to_json()
            for c in world().calls
            if c.seq > since
            and (not wanted or c.method.lower() == wanted)
            and (bot_id is None or c.bot_id == bot_id)
        ]

    async def rate_limits(request: web.Request) -> Any:
        w, body = world(), await _body(request)
        g, c = body.get("global_per_second"), body.get("per_chat_per_second")
        w.guard.set_limits(None if g is None else float(g), None if c is None else float(c))
        return w.guard.stats()

    async def add_fault(request: web.Request) -> Any:
        w, body = world(), await _body(request)
        try:
            fault = make_fault(body, emulator.canonical_methods())
        except (TypeError, ValueError) as exc:
            raise ControlError(400, str(exc)) from None
        w.guard.faults.append(fault)
        return fault.to_json()

    async def clear_faults(request: web.Request) -> Any:
        world().guard.faults.clear()
        return {"ok": True}

    async def stats(request: web.Request) -> Any:
        return world().guard.stats()

    async def clock(request: web.Request) -> Any:
        w = world()
        if request.method == "POST":
            body = await _body(request)
            try:
                w.clock.advance(float(body.get("advance", 0)))
            except ValueError as exc:
                raise ControlError(400, str(exc)) from None
            channels.expire_subscriptions(w)  # Telegram ends Star subscriptions on time
            stars.run_renewals(w)  # subscriptions whose period ended charge again
        return {"now": w.clock.now(), "offset": w.clock.offset}

    async def redeliver(request: web.Request) -> Any:
        """{"update_id": N} queues that confirmed update again; {"lose_answers": N} makes
        the next N webhook answers get lost (each of those updates comes again)."""
        w, body = world(), await _body(request)
        bot = w.control_bot(_opt_int(body.get("bot_id"), "bot_id"))
        if body.get("lose_answers") is not None:
            bot.updates.lose_answers = _int(body.get("lose_answers"), "lose_answers")
            return {"lose_answers": bot.updates.lose_answers}
        update_id = _opt_int(body.get("update_id"), "update_id")
        try:
            return bot.updates.recall(update_id)
        except KeyError:
            raise ControlError(404, f"update {update_id} was never confirmed") from None

    async def pending(request: web.Request) -> Any:
        w = world()
        bot = w.control_bot(_opt_int(request.query.get("bot_id"), "bot_id"))
        return {
            "count": len(bot.updates.pending),
            "dropped": bot.updates.dropped,
            "update_types": [next(k for k in u if k != "update_id") for u in bot.updates.pending],
        }

    async def file(request: web.Request) -> Any:
        stored = world().files.get(request.match_info["file_id"])
        if stored is None:
            raise ControlError(404, "no such file")
        return web.Response(
            body=stored.content, content_type=stored.mime_type or "application/octet-stream"
        )

    r = app.router
    r.add_post("/control/reset", route(reset))
    r.add_post("/control/bots", route(create_bot))
    r.add_get("/control/bots/{bot_id}", route(get_bot))
    r.add_post("/control/users", route(create_user))
    r.add_post("/control/users/{user_id}/{action:block|unblock}", route(block))
    r.add_post("/control/chats", route(create_chat))
    r.add_get("/control/chats/{chat_id}", route(get_chat))
    r.add_post("/control/chats/{chat_id}/admins", route(promote))
    r.add_delete("/control/chats/{chat_id}/admins/{user_id}", route(demote))
    r.add_post("/control/chats/{chat_id}/members", route(add_member))
    r.add_get("/control/chats/{chat_id}/members/{user_id}", route(get_member))
    r.add_delete("/control/chats/{chat_id}/members/{user_id}", route(remove_member))
    r.add_get("/control/chats/{chat_id}/messages", route(messages))
    r.add_get("/control/chats/{chat_id}/invite_links", route(invite_links))
    r.add_post("/control/chats/{chat_id}/invite_links", route(create_invite_link))
    r.add_get("/control/chats/{chat_id}/join_requests", route(join_requests))
    r.add_post("/control/messages", route(send_message))
    r.add_post("/control/callbacks", route(press_button))
    r.add_get("/control/callbacks/{query_id}", route(callback))
    r.add_post("/control/join", route(join))
    r.add_post("/control/invoices/pay", route(pay))
    r.add_get("/control/payments", route(payments))
    r.add_get("/control/calls", route(calls))
    r.add_post("/control/rate_limits", route(rate_limits))
    r.add_post("/control/faults", route(add_fault))
    r.add_delete("/control/faults", route(clear_faults))
    r.add_get("/control/stats", route(stats))
    r.add_get("/control/clock", route(clock))
    r.add_post("/control/clock", route(clock))
    r.add_get("/control/updates/pending", route(pending))
    r.add_post("/control/updates/redeliver", route(redeliver))
    r.add_get("/control/files/{file_id}", route(file))
    stars_control.setup_routes(app, world, route)
