"""ChatGateway: how membership rules reach a chat platform. bot/ implements it per platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class GatewayError(Exception):
    """The platform refused or failed a call."""


class RetryAfter(GatewayError):
    """Rate limited: try again after `seconds` (Telegram 429 parameters.retry_after)."""

    def __init__(self, seconds: float, message: str = "") -> None:
        super().__init__(message or f"retry after {seconds}s")
        self.seconds = seconds


class TransientError(GatewayError):
    """5xx or network trouble: back off and retry."""


class RejectedError(GatewayError):
    """A 4xx that will not change by retrying (missing rights, user blocked the bot)."""


class BlockedError(RejectedError):
    """The user cannot be reached at all: they blocked the bot, or deleted their account
    (Telegram 403). Told apart from other refusals where it is counted (/broadcast)."""


@dataclass(frozen=True)
class Button:
    text_key: str  # catalog key, rendered in the user's language
    url: str | None = None
    callback_data: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BotRights:
    is_admin: bool
    can_invite_users: bool
    can_restrict_members: bool

    def missing(self) -> list[str]:
        if not self.is_admin:
            return ["admin"]
        out = []
        if not self.can_invite_users:
            out.append("can_invite_users")
        if not self.can_restrict_members:
            out.append("can_restrict_members")
        return out


class AddOutcome(StrEnum):
    """What adding a buyer to a room (invite_mode add_member, WeChat) came to."""

    ADDED = "added"  # they are in the room now
    ALREADY_MEMBER = "already_member"  # they were in already (a delivery run again)
    # The room takes no direct add (over 40 members, or invite confirmation on): the buyer
    # was sent the room's join code instead and must scan it (and the owner may have to
    # confirm); the join guard lets them in because their access is active.
    INVITED = "invited"


class ChatGateway(Protocol):
    platform: str

    def check_budget(self, chat_id: str) -> None:
        """Raise RetryAfter at once if a call about this chat would wait long for the rate
        budget: the caller puts its work back before doing any of it."""
        ...

    async def create_invite(
        self, chat_id: str, *, name: str, join_request: bool, expire_at: datetime | None
    ) -> str:
        """A join-request link (join_request=True) or a member_limit=1 link; returns the URL."""
        ...

    async def revoke_invite(self, chat_id: str, link: str) -> None: ...

    async def approve_join(self, chat_id: str, user_id: str) -> None: ...

    async def decline_join(self, chat_id: str, user_id: str) -> None: ...

    async def add_member(self, chat_id: str, user_id: str) -> AddOutcome:
        """Put the user into the room (WeChat `room.add`), or send them an invitation where
        the room needs one. Platforms without it (Telegram) raise RejectedError."""
        ...

    async def remove_member(self, chat_id: str, user_id: str) -> None:
        """Remove without a lasting ban, so the user can come back after paying."""
        ...

    async def send(
        self,
        user_id: str,
        key: str,
        params: dict[str, Any],
        language: str | None,
        buttons: list[Button] | None = None,
    ) -> None:
        """Send the catalog message `key` to the user's private chat."""
        ...

    async def send_prepared(self, chat_id: str, call: dict[str, Any]) -> None:
        """Send a reply the chat front-end prepared and stored (outbox kind `reply`): a
        platform call as data, opaque to the membership rules."""
        ...
