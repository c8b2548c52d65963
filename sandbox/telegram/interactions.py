"""What users do in the app: write, press buttons, pay invoices, block the bot."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from .errors import ControlError
from .formatting import detect_entities
from .stars import record_payment
from .state import BotAccount, Chat, Member, StoredMessage, User
from .world import World

# Telegram gives a bot 10 seconds to answer a pre-checkout query.
PRE_CHECKOUT_TIMEOUT = 10.0


@dataclass
class CallbackRecord:
    id: str
    bot_id: int
    user_id: int
    chat_id: int
    message_id: int
    data: str
    answer: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bot_id": self.bot_id,
            "user_id": self.user_id,
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "data": self.data,
            "answered": self.answer is not None,
            "answer": self.answer,
        }


@dataclass
class CheckoutRecord:
    id: str
    bot_id: int
    user_id: int
    answer: asyncio.Future[tuple[bool, str | None]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _query_id() -> str:
    # Real query ids are large decimal numbers in a string.
    return str(secrets.randbits(62))


def chat_instance(chat: Chat, bot: BotAccount) -> str:
    digest = hashlib.sha256(f"{chat.id}:{bot.id}".encode()).digest()
    return str(int.from_bytes(digest[:8], "big", signed=True))


def user_message(
    world: World,
    user: User,
    chat: Chat,
    text: str,
    *,
    bot: BotAccount | None,
    reply_to: int | None = None,
) -> StoredMessage:
    """A user writes `text` in their private chat with `bot`, or in a group."""
    if not text:
        raise ControlError(400, "text is required")
    fields: dict[str, Any] = {"text": text}
    entities = detect_entities(text)
    if entities:
        fields["entities"] = entities
    if reply_to is not None:
        target = chat.messages.get(reply_to)
        if target is None or target.deleted:
            raise ControlError(404, f"no message {reply_to} in chat {chat.id}")
        fields["reply_to_message"] = target.as_reply_target()
    if chat.private_user is not None:
        if chat.id != user.id:
            raise ControlError(400, "a user writes only in their own private chat")
        if bot is None:
            raise ControlError(400, "which bot? pass bot_id")
        if user.id in bot.blocked_by:
            # Writing to a blocked bot means pressing "Restart" in the app: it unblocks.
            set_blocked(world, bot, user, False)
        bot.started_by.add(user.id)
        stored = world.new_message(chat, user, fields)
        bot.updates.push("message", stored.data)
        return stored
    if chat.type == "channel":
        raise ControlError(400, "users cannot post in channels here")
    if not world.member(chat, user.id).present:
        raise ControlError(403, f"user {user.id} is not a member of chat {chat.id}")
    stored = world.new_message(chat, user, fields)
    world.deliver_group_message(chat, stored)
    return stored


def set_blocked(world: World, bot: BotAccount, user: User, blocked: bool) -> None:
    """Block/unblock, with the my_chat_member update Telegram sends for private chats."""
    if blocked == (user.id in bot.blocked_by):
        return
    chat = world.chats[user.id]
    old = Member(user_id=bot.id, status="kicked" if not blocked else "member")
    new = Member(user_id=bot.id, status="kicked" if blocked else "member")
    if blocked:
        bot.blocked_by.add(user.id)
    else:
        bot.blocked_by.discard(user.id)
    bot.updates.push(
        "my_chat_member",
        {
            "chat": chat.to_api(),
            "from": user.to_api(),
            "date": world.now(),
            "old_chat_member": old.to_api(bot.user, "private"),
            "new_chat_member": new.to_api(bot.user, "private"),
        },
    )


def press_button(world: World, user: User, chat: Chat, message_id: int, data: str) -> str:
    stored = chat.messages.get(message_id)
    if stored is None or stored.deleted:
        raise ControlError(404, f"no message {message_id} in chat {chat.id}")
    bot = world.bots.get(stored.sender_id)
    if bot is None:
        raise ControlError(400, "that message was not sent by a bot")
    markup = stored.data.get("reply_markup") or {}
    buttons = [b for row in markup.get("inline_keyboard", []) for b in row]
    if not any(b.get("callback_data") == data for b in buttons):
        raise ControlError(400, f"message {message_id} has no button with callback_data {data!r}")
    if chat.private_user is not None:
        if chat.id != user.id:
            raise ControlError(403, "only the chat's user sees this message")
    elif not world.member(chat, user.id).present:
        raise ControlError(403, f"user {user.id} is not a member of chat {chat.id}")
    record = CallbackRecord(
        id=_query_id(),
        bot_id=bot.id,
        user_id=user.id,
        chat_id=chat.id,
        message_id=message_id,
        data=data,
    )
    world.callbacks[record.id] = record
    bot.updates.push(
        "callback_query",
        {
            "id": record.id,
            "from": user.to_api(),
            "message": stored.data,
            "chat_instance": chat_instance(chat, bot),
            "data": data,
        },
    )
    return record.id


async def pay_invoice(
    world: World,
    user: User,
    chat: Chat,
    message_id: int,
    timeout: float = PRE_CHECKOUT_TIMEOUT,
    deliver: bool = True,
) -> dict[str, Any]:
    """The user pays an invoice message: pre_checkout_query, wait for the bot's answer, then the
    successful_payment service message (not when `deliver` is false: the update is lost; a
    Stars payment is still among the bot's transactions). Answers {"status":
    "paid"|"declined"|"timeout", ...}."""
    stored = chat.messages.get(message_id)
    if stored is None or stored.deleted or stored.invoice is None:
        raise ControlError(404, f"no invoice message {message_id} in chat {chat.id}")
    if chat.private_user is not None and chat.id != user.id:
        raise ControlError(403, "only the chat's user sees this invoice")
    bot = world.bots[stored.sender_id]
    invoice = stored.invoice
    checkout = CheckoutRecord(id=_query_id(), bot_id=bot.id, user_id=user.id)
    world.checkouts[checkout.id] = checkout
    bot.updates.push(
        "pre_checkout_query",
        {
            "id": checkout.id,
            "from": user.to_api(),
            "currency": invoice["currency"],
            "total_amount": invoice["total_amount"],
            "invoice_payload": invoice["payload"],
        },
    )
    try:
        ok, error_message = await asyncio.wait_for(asyncio.shield(checkout.answer), timeout)
    except TimeoutError:
        return {"status": "timeout", "pre_checkout_query_id": checkout.id}
    finally:
        world.checkouts.pop(checkout.id, None)
    if not ok:
        return {
            "status": "declined",
            "error_message": error_message,
            "pre_checkout_query_id": checkout.id,
        }
    stars = invoice["currency"] == "XTR"
    charge_id = ("stxt" if stars else "") + secrets.token_urlsafe(32)
    payment = {
        "currency": invoice["currency"],
        "total_amount": invoice["total_amount"],
        "invoice_payload": invoice["payload"],
        "telegram_payment_charge_id": charge_id,
        "provider_payment_charge_id": "" if stars else "pi_" + secrets.token_hex(12),
    }
    world.payments[charge_id] = {
        **payment,
        "user_id": user.id,
        "bot_id": bot.id,
        "chat_id": chat.id,
        "refunded": False,
        "date": world.now(),
    }
    if stars:
        record_payment(world, bot, user, payment)
    answer: dict[str, Any] = {
        "status": "paid",
        "telegram_payment_charge_id": charge_id,
        "pre_checkout_query_id": checkout.id,
    }
    if deliver:
        message = world.new_message(chat, user, {"successful_payment": payment}, kind="service")
        bot.updates.push("message", message.data)
        answer["message_id"] = message.message_id
    return answer


def refund_message(world: World, payment: dict[str, Any]) -> None:
    """Telegram tells the bot about a refund with a refunded_payment service message."""
    chat = world.chats[payment["user_id"]]
    user = world.users[payment["user_id"]]
    bot = world.bots[payment["bot_id"]]
    fields = {
        "refunded_payment": {
            key: payment[key]
            for key in ("currency", "total_amount", "invoice_payload", "telegram_payment_charge_id")
        }
    }
    message = world.new_message(chat, user, fields, kind="service")
    bot.updates.push("message", message.data)
