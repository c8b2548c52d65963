"""What the WeChat worker hands to the conversation handlers, and what they hand back.

Plain values, so the handlers (bot/wechat/conversation*.py) are tested without gRPC and the
worker (bot/wechat/worker.py) is the only code that touches python-wechaty's objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Incoming:
    """A text message to the bot: in private (`room_id` None) or in a room."""

    message_id: str  # the puppet's id: applied once (wechat_message)
    sender_id: str  # the contact id (wxid_...)
    sender_name: str
    text: str
    room_id: str | None = None
    room_topic: str | None = None
    # For a room message: who owns and administers the room, as the puppet says now
    # (/setup checks that the sender owns it and the bot owns or administers it).
    room_owner_id: str | None = None
    room_admin_ids: tuple[str, ...] = ()
    room_member_count: int = 0


@dataclass(frozen=True)
class RoomJoined:
    """Contacts appeared in a room (room-join): added by the bot, by a member, or by scan."""

    room_id: str
    invitee_ids: tuple[str, ...]
    inviter_id: str | None


@dataclass(frozen=True)
class Outgoing:
    """One message for the bot to send: a text, or a PNG image (a payment QR code), to a
    contact or a room. Handlers return these; the dispatcher queues them as outbox `reply`
    rows (platform `wechat`) in the handler's own transaction, so none is lost."""

    to: str
    text: str | None = None
    image_png: bytes | None = None
    image_name: str = "qr.png"
    extra: dict[str, str] = field(default_factory=dict)
