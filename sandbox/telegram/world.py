"""The emulated Telegram: who exists, who is where, and which bot hears about what.

Rules shared by the Bot API handlers (api/) and the control API (control.py) live here and in
membership.py / interactions.py, so both surfaces change the world the same way.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, ControlError, bad_request, forbidden
from .guard import Guard
from .stars import StarsLedger
from .state import (
    BotAccount,
    Chat,
    Clock,
    InviteLink,
    Member,
    StoredFile,
    StoredMessage,
    User,
)

TOKEN = re.compile(r"^(\d{1,20}):([A-Za-z0-9_-]{1,128})$")

# "A bot may message a join-requester for 5 minutes" (ChatJoinRequest.user_chat_id).
JOIN_REQUEST_DM_WINDOW = 5 * 60


@dataclass
class CallRecord:
    seq: int
    at: float
    bot_id: int
    method: str
    params: dict[str, Any]
    ok: bool
    error_code: int | None = None
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class World:
    bot_username: str = "gatepass_bot"
    bot_first_name: str = "Gatepass"
    clock: Clock = field(default_factory=Clock)
    guard: Guard = field(default_factory=Guard)
    users: dict[int, User] = field(default_factory=dict)
    bots: dict[int, BotAccount] = field(default_factory=dict)
    chats: dict[int, Chat] = field(default_factory=dict)
    files: dict[str, StoredFile] = field(default_factory=dict)
    # sendPhoto: each stored size's file_id -> the photo's PhotoSize list (a photo re-sent by
    # the file_id of any of its sizes is the same photo).
    photos: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[CallRecord] = field(default_factory=list)
    # (chat_id, user_id, date) of every join request ever sent: the private-message window.
    join_history: list[tuple[int, int, int]] = field(default_factory=list)
    # Callback queries, pre-checkout queries and payments: see interactions.py.
    callbacks: dict[str, Any] = field(default_factory=dict)
    checkouts: dict[str, Any] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Star subscriptions to channels, by (chat_id, user_id): see channels.py.
    channel_subscriptions: dict[tuple[int, int], Any] = field(default_factory=dict)
    stars: StarsLedger = field(default_factory=StarsLedger)  # links, subscriptions: stars.py

    def now(self) -> int:
        return int(self.clock.now())

    def close(self) -> None:
        for bot in self.bots.values():
            bot.updates.close()

    # --- bots -----------------------------------------------------------------------------

    def bot_for_token(self, token: str) -> BotAccount:
        """The bot of a token; a well-formed token of an unseen id creates that bot."""
        match = TOKEN.match(token)
        if not match:
            raise ApiError(401, "Unauthorized")
        bot = self.bots.get(int(match.group(1)))
        if bot is None:
            return self.register_bot(token)
        if bot.secret != match.group(2):
            raise ApiError(401, "Unauthorized")
        return bot

    def register_bot(
        self,
        token: str,
        *,
        username: str | None = None,
        first_name: str | None = None,
        can_read_all_group_messages: bool | None = None,
    ) -> BotAccount:
        match = TOKEN.match(token)
        if not match:
            raise ControlError(400, "token must look like <bot_id>:<secret>")
        bot_id, secret = int(match.group(1)), match.group(2)
        existing = self.users.get(bot_id)
        if existing is not None and not existing.is_bot:
            raise ControlError(409, f"user {bot_id} exists and is not a bot")
        bot = self.bots.get(bot_id)
        if bot is None:
            taken = {b.user.username for b in self.bots.values()}
            default = self.bot_username if self.bot_username not in taken else f"bot{bot_id}_bot"
            user = User(
                id=bot_id,
                first_name=first_name or self.bot_first_name,
                is_bot=True,
                username=username or default,
            )
            bot = BotAccount(user=user, secret=secret)
            self.bots[bot_id] = bot
            self._add_user_record(user)
        bot.secret = secret
        if username:
            bot.user.username = username
        if first_name:
            bot.user.first_name = first_name
        if can_read_all_group_messages is not None:
            bot.can_read_all_group_messages = can_read_all_group_messages
        return bot

    def control_bot(self, bot_id: int | None) -> BotAccount:
        """The bot a control call means: the given one, or the only one there is."""
        if bot_id is not None:
            bot = self.bots.get(int(bot_id))
            if bot is None:
                raise ControlError(404, f"no bot {bot_id} (register it or let it call the API)")
            return bot
        if len(self.bots) == 1:
            return next(iter(self.bots.values()))
        if not self.bots:
            raise ControlError(409, "no bot yet: POST /control/bots or make a Bot API call first")
        raise ControlError(400, "several bots exist: pass bot_id")

    # --- users and chats ------------------------------------------------------------------

    def _add_user_record(self, user: User) -> None:
        self.users[user.id] = user
        # Every user has exactly one private chat with the bots; its id is the user's id.
        self.chats.setdefault(user.id, Chat(id=user.id, type="private", private_user=user))

    def add_user(self, spec: dict[str, Any]) -> User:
        try:
            user_id = int(spec["id"])
        except (KeyError, TypeError, ValueError):
            raise ControlError(400, "id (a positive integer) is required") from None
        if user_id <= 0:
            raise ControlError(400, "user ids are positive (chat ids of groups are negative)")
        if user_id in self.bots:
            raise ControlError(409, f"{user_id} is a bot")
        user = User(
            id=user_id,
            first_name=str(spec.get("first_name") or f"User{user_id}"),
            is_bot=bool(spec.get("is_bot", False)),
            last_name=spec.get("last_name"),
            username=spec.get("username"),
            language_code=spec.get("language_code"),
            is_premium=bool(spec.get("is_premium", False)),
        )
        existing = self.users.get(user_id)
        if existing is not None:
            existing.__dict__.update(user.__dict__)
            return existing
        self._add_user_record(user)
        return user

    def add_chat(self, spec: dict[str, Any]) -> Chat:
        try:
            chat_id = int(spec["id"])
            creator_id = int(spec["creator_id"])
        except (KeyError, TypeError, ValueError):
            raise ControlError(400, "id (negative integer) and creator_id are required") from None
        chat_type = spec.get("type", "supergroup")
        if chat_type not in ("group", "supergroup", "channel"):
            raise ControlError(400, "type must be group, supergroup or channel")
        if chat_id >= 0:
            raise ControlError(400, "group and channel ids are negative")
        if chat_id in self.chats:
            raise ControlError(409, f"chat {chat_id} exists")
        creator = self.control_user(creator_id)
        if creator.is_bot:
            raise ControlError(400, "a bot cannot create a chat")
        chat = Chat(
            id=chat_id,
            type=chat_type,
            title=str(spec.get("title") or f"Chat {chat_id}"),
            username=spec.get("username"),
            description=spec.get("description"),
        )
        chat.members[creator_id] = Member(user_id=creator_id, status="creator")
        self.chats[chat_id] = chat
        return chat

    def control_user(self, user_id: Any) -> User:
        try:
            user = self.users.get(int(user_id))
        except (TypeError, ValueError):
            user = None
        if user is None:
            raise ControlError(404, f"no user {user_id}")
        return user

    def control_chat(self, chat_id: Any) -> Chat:
        try:
            chat = self.chats.get(int(chat_id))
        except (TypeError, ValueError):
            chat = None
        if chat is None:
            raise ControlError(404, f"no chat {chat_id}")
        return chat

    def member(self, chat: Chat, user_id: int) -> Member:
        """The member record as of now; a lapsed temporary ban or restriction is lifted."""
        member = chat.members.get(user_id)
        if member is None:
            if chat.private_user is not None and user_id in (chat.id, *self.bots):
                return Member(user_id=user_id, status="member")
            return Member(user_id=user_id, status="left")
        if member.status in ("kicked", "restricted") and 0 < member.until_date <= self.now():
            member = Member(
                user_id=user_id,
                status="member" if (member.status == "restricted" and member.is_member) else "left",
            )
            chat.members[user_id] = member
        return member

    def find_link(self, url: str) -> tuple[Chat, InviteLink] | None:
        for chat in self.chats.values():
            link = chat.links.get(url)
            if link is not None:
                return chat, link
        return None

    def link_usage(self, chat: Chat, link: InviteLink) -> int:
        """Members who joined through the link and are still there (what member_limit caps)."""
        return sum(1 for m in chat.members.values() if m.joined_via == link.url and m.present)

    # --- what a bot may see and do ----------------------------------------------------------

    def resolve_chat(self, bot: BotAccount, chat_id: Any) -> Chat:
        """chat_id as a bot passes it: an id or '@username'; chats the bot is not in do not exist
        for it ("chat not found"), as on Telegram."""
        if chat_id in (None, ""):
            raise bad_request("chat_id is empty")
        chat: Chat | None = None
        text = str(chat_id).strip()
        if text.startswith("@"):
            chat = next(
                (
                    c
                    for c in self.chats.values()
                    if c.username
                    and c.username.lower() == text[1:].lower()
                    and c.private_user is None
                ),
                None,
            )
        else:
            try:
                chat = self.chats.get(int(text))
            except ValueError:
                chat = None
        if chat is None:
            raise bad_request("chat not found")
        if chat.private_user is not None:
            if chat.id not in self.users or not self.knows_user(bot, chat.id):
                raise bad_request("chat not found")
        elif bot.id not in chat.members and not chat.username:
            raise bad_request("chat not found")
        return chat

    def knows_user(self, bot: BotAccount, user_id: int) -> bool:
        """A bot can address a user it has met: in its private chat, a join request, or a chat
        they share."""
        if user_id in bot.started_by or user_id in bot.blocked_by or user_id == bot.id:
            return True
        if any(uid == user_id for _c, uid, _d in self.join_history):
            return True
        return any(bot.id in c.members and user_id in c.members for c in self.chats.values())

    def require_right(self, bot: BotAccount, chat: Chat, right: str, error: ApiError) -> None:
        if not self.member(chat, bot.id).right(right):
            raise error

    def check_can_post(self, bot: BotAccount, chat: Chat) -> None:
        """May `bot` send a message into `chat` (before any content checks)?"""
        if chat.private_user is not None:
            self.check_can_message_user(bot, chat.private_user)
            return
        member = self.member(chat, bot.id)
        if member.status == "kicked":
            raise forbidden(f"bot was kicked from the {chat.kind_name}")
        if not member.present:
            raise forbidden(f"bot is not a member of the {chat.kind_name}")
        if chat.type == "channel" and not member.right("can_post_messages"):
            raise bad_request("need administrator rights in the channel chat")

    def check_can_message_user(self, bot: BotAccount, user: User) -> None:
        if user.is_bot:
            raise forbidden("bot can't send messages to bots")
        if user.id in bot.blocked_by:
            raise forbidden("bot was blocked by the user")
        if user.id in bot.started_by:
            return
        now = self.now()
        for chat_id, user_id, date in self.join_history:
            chat = self.chats.get(chat_id)
            if (
                user_id == user.id
                and now - date <= JOIN_REQUEST_DM_WINDOW
                and chat is not None
                and self.member(chat, bot.id).right("can_invite_users")
            ):
                return
        raise forbidden("bot can't initiate conversation with a user")

    def bots_present(self, chat: Chat) -> Iterator[BotAccount]:
        for bot in list(self.bots.values()):
            if self.member(chat, bot.id).present:
                yield bot

    def admin_bots(self, chat: Chat, right: str | None = None) -> Iterator[BotAccount]:
        for bot in list(self.bots.values()):
            member = self.member(chat, bot.id)
            if member.status in ("creator", "administrator") and (
                right is None or member.right(right)
            ):
                yield bot

    # --- messages ---------------------------------------------------------------------------

    def new_message(
        self,
        chat: Chat,
        sender: User,
        fields: dict[str, Any],
        *,
        kind: str = "text",
    ) -> StoredMessage:
        message_id = chat.next_message_id
        chat.next_message_id += 1
        data: dict[str, Any] = {"message_id": message_id}
        if chat.type == "channel":
            # Channel posts are sent on behalf of the channel: sender_chat, and no "from".
            data["sender_chat"] = chat.to_api()
        else:
            data["from"] = sender.to_api()
        data.update(chat=chat.to_api(), date=self.now())
        data.update(fields)
        stored = StoredMessage(
            chat_id=chat.id, message_id=message_id, sender_id=sender.id, data=data, kind=kind
        )
        chat.messages[message_id] = stored
        return stored

    def deliver_group_message(self, chat: Chat, stored: StoredMessage) -> None:
        """Give a group message to the bots that hear it. Privacy mode (BotFather's default)
        lets a non-admin bot hear only commands, replies to itself and service messages."""
        text = stored.data.get("text") or ""
        reply_to = (stored.data.get("reply_to_message") or {}).get("from", {}).get("id")
        service = stored.kind == "service"
        for bot in self.bots_present(chat):
            if bot.id == stored.sender_id and not service:
                continue
            member = self.member(chat, bot.id)
            hears_all = bot.can_read_all_group_messages or member.status == "administrator"
            command = re.match(r"/[A-Za-z0-9_]+(?:@([A-Za-z0-9_]+))?", text)
            addressed = command is not None and (
                command.group(1) is None
                or command.group(1).lower() == (bot.user.username or "").lower()
            )
            if hears_all or service or addressed or reply_to == bot.id:
                kind = "channel_post" if chat.type == "channel" else "message"
                bot.updates.push(kind, stored.data)

    def service_message(self, chat: Chat, actor: User, fields: dict[str, Any]) -> None:
        """Service messages ("X joined", "Y removed Z") that groups show and bots receive."""
        if chat.type not in ("group", "supergroup"):
            return
        stored = self.new_message(chat, actor, fields, kind="service")
        self.deliver_group_message(chat, stored)

    def store_file(
        self, name: str, content: bytes, mime_type: str | None, *, folder: str = "documents"
    ) -> StoredFile:
        file_id = "BQACAgIAAx" + secrets.token_urlsafe(24)
        unique = "AgAD" + secrets.token_urlsafe(8)
        stored = StoredFile(
            file_id=file_id,
            file_unique_id=unique,
            file_name=name,
            content=content,
            mime_type=mime_type,
            file_path=f"{folder}/file_{len(self.files)}_{name}",
        )
        self.files[file_id] = stored
        return stored
