"""The emulated world's data: users, chats, members, invite links, join requests, messages.

Plain dataclasses plus their Bot API serialisations (`to_api`). Behaviour (who may do what,
which update is emitted) lives in world.py; the Bot API method handlers live in api/.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .updates import UpdateQueue

# Statuses of a member that is in the chat (restricted counts only when is_member is set).
PRESENT = frozenset({"creator", "administrator", "member"})

# Rights of ChatMemberAdministrator that aiogram requires in every administrator object.
BASE_ADMIN_RIGHTS = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_send_welcome_messages",
)
# Rights Telegram shows only for some chat types.
CHANNEL_ADMIN_RIGHTS = ("can_post_messages", "can_edit_messages", "can_manage_direct_messages")
GROUP_ADMIN_RIGHTS = ("can_pin_messages", "can_manage_topics")
ALL_ADMIN_RIGHTS = frozenset(BASE_ADMIN_RIGHTS + CHANNEL_ADMIN_RIGHTS + GROUP_ADMIN_RIGHTS)

# What a restricted member object must carry (all false = fully muted member).
RESTRICTED_PERMISSIONS = (
    "can_send_messages",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
    "can_send_polls",
    "can_send_other_messages",
    "can_add_web_page_previews",
    "can_react_to_messages",
    "can_edit_tag",
    "can_change_info",
    "can_invite_users",
    "can_pin_messages",
    "can_manage_topics",
)


class Clock:
    """Emulator time: real time plus an offset that tests can only move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds
        return self.now()


@dataclass
class User:
    id: int
    first_name: str
    is_bot: bool = False
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    is_premium: bool = False

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.is_premium:
            out["is_premium"] = True
        return out


@dataclass
class BotAccount:
    """A bot known to the emulator: its user, its token secret, and its per-bot state."""

    user: User
    secret: str
    can_read_all_group_messages: bool = False  # False = privacy mode, as BotFather's default
    updates: UpdateQueue = field(default_factory=UpdateQueue)
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    started_by: set[int] = field(default_factory=set)  # users who ever wrote to the bot
    blocked_by: set[int] = field(default_factory=set)
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_max_connections: int = 40
    webhook_last_error_date: int | None = None
    webhook_last_error_message: str | None = None

    @property
    def id(self) -> int:
        return self.user.id

    def get_me(self) -> dict[str, Any]:
        me = self.user.to_api()
        me.update(
            can_join_groups=True,
            can_read_all_group_messages=self.can_read_all_group_messages,
            supports_inline_queries=False,
            can_connect_to_business=False,
            has_main_web_app=False,
        )
        return me


@dataclass
class Member:
    user_id: int
    status: str  # creator|administrator|member|restricted|left|kicked
    rights: dict[str, bool] = field(default_factory=dict)
    until_date: int = 0  # kicked/restricted: 0 = forever
    is_member: bool = True  # restricted only
    joined_via: str | None = None  # invite link used, for member_limit accounting
    promoted_by: int | None = None  # administrators: who can edit them
    custom_title: str | None = None

    @property
    def present(self) -> bool:
        return self.status in PRESENT or (self.status == "restricted" and self.is_member)

    def right(self, name: str) -> bool:
        if self.status == "creator":
            return True
        return self.status == "administrator" and bool(self.rights.get(name))

    def to_api(self, user: User, chat_type: str, viewer_id: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "user": user.to_api()}
        if self.status == "creator":
            out["is_anonymous"] = False
        elif self.status == "administrator":
            out["can_be_edited"] = viewer_id is not None and self.promoted_by == viewer_id
            out["is_anonymous"] = False
            names = BASE_ADMIN_RIGHTS + (
                CHANNEL_ADMIN_RIGHTS if chat_type == "channel" else GROUP_ADMIN_RIGHTS
            )
            out.update({name: bool(self.rights.get(name)) for name in names})
        elif self.status == "restricted":
            out["is_member"] = self.is_member
            out.update(dict.fromkeys(RESTRICTED_PERMISSIONS, False))
            out["until_date"] = self.until_date
        elif self.status == "kicked":
            out["until_date"] = self.until_date
        elif self.status == "member" and self.until_date:
            # A Star subscriber of a channel: when the subscription runs out (channels.py).
            out["until_date"] = self.until_date
        if self.custom_title and self.status in ("creator", "administrator"):
            out["custom_title"] = self.custom_title
        return out


@dataclass
class InviteLink:
    url: str
    creator_id: int
    created_at: int
    creates_join_request: bool = False
    name: str | None = None
    expire_date: int | None = None
    member_limit: int | None = None
    is_revoked: bool = False
    # Star subscription links (createChatSubscriptionInviteLink; channels.py).
    subscription_period: int | None = None
    subscription_price: int | None = None

    def to_api(self, chat: Chat, users: dict[int, User], viewer_id: int | None) -> dict[str, Any]:
        url = self.url
        # Telegram hides most of a link a bot did not create ("...the second part of the link
        # will be replaced with '…'"), so a bot cannot reuse another admin's link.
        if viewer_id is not None and viewer_id != self.creator_id:
            url = url[: len("https://t.me/+") + 8] + "..."
        out: dict[str, Any] = {
            "invite_link": url,
            "creator": users[self.creator_id].to_api(),
            "creates_join_request": self.creates_join_request,
            "is_primary": False,
            "is_revoked": self.is_revoked,
        }
        if self.name:
            out["name"] = self.name
        if self.expire_date:
            out["expire_date"] = self.expire_date
        if self.member_limit:
            out["member_limit"] = self.member_limit
        if self.subscription_period:
            out["subscription_period"] = self.subscription_period
            out["subscription_price"] = self.subscription_price
        if self.creates_join_request:
            out["pending_join_request_count"] = sum(
                1 for r in chat.join_requests.values() if r.invite_link == self.url
            )
        return out


@dataclass
class JoinRequest:
    user_id: int
    date: int
    invite_link: str | None


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_name: str
    content: bytes
    mime_type: str | None
    file_path: str


@dataclass
class StoredMessage:
    """A message as Telegram holds it (`data` is the Bot API Message) plus what tests read."""

    chat_id: int
    message_id: int
    sender_id: int
    data: dict[str, Any]
    kind: str = "text"  # text|document|invoice|service
    parse_mode: str | None = None
    raw_text: str | None = None  # text before parse_mode was applied
    reply_markup: dict[str, Any] | None = None  # any markup, also reply keyboards
    link_preview_options: dict[str, Any] | None = None
    file_id: str | None = None
    invoice: dict[str, Any] | None = None  # every sendInvoice parameter
    deleted: bool = False

    def as_reply_target(self) -> dict[str, Any]:
        """The message as a reply_to_message: Telegram nests replies one level deep only."""
        return {k: v for k, v in self.data.items() if k != "reply_to_message"}


@dataclass
class Chat:
    id: int
    type: str  # private|group|supergroup|channel
    title: str | None = None
    username: str | None = None
    description: str | None = None
    members: dict[int, Member] = field(default_factory=dict)
    links: dict[str, InviteLink] = field(default_factory=dict)
    join_requests: dict[int, JoinRequest] = field(default_factory=dict)
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    next_message_id: int = 1
    private_user: User | None = None  # the user of a private chat

    @property
    def kind_name(self) -> str:
        """How Telegram names the chat in errors: 'group chat', 'supergroup chat'..."""
        return {
            "group": "group chat",
            "supergroup": "supergroup chat",
            "channel": "channel chat",
        }.get(self.type, "chat")

    def to_api(self) -> dict[str, Any]:
        if self.private_user is not None:
            user = self.private_user
            out: dict[str, Any] = {"id": self.id, "type": "private", "first_name": user.first_name}
            if user.last_name:
                out["last_name"] = user.last_name
            if user.username:
                out["username"] = user.username
            return out
        out = {"id": self.id, "type": self.type, "title": self.title}
        if self.username:
            out["username"] = self.username
        return out
