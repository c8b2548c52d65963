"""Async Python client of the emulator's control API (see the package docstring)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp


class EmulatorError(Exception):
    """The control API refused a call (unknown chat, no such button, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass
class SentMessage:
    """A message in a chat as the control API reports it (see GET .../messages)."""

    message_id: int
    chat_id: int
    sender_id: int
    kind: str  # text | document | photo | invoice | service
    text: str | None  # text, or a document's or photo's caption
    reply_markup: dict[str, Any] | None
    deleted: bool
    edit_date: int | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SentMessage:
        return cls(
            message_id=data["message_id"],
            chat_id=data["chat_id"],
            sender_id=data["sender_id"],
            kind=data["kind"],
            text=data.get("text"),
            reply_markup=data.get("reply_markup"),
            deleted=data["deleted"],
            edit_date=data.get("edit_date"),
            raw=data,
        )

    @property
    def message(self) -> dict[str, Any]:
        """The Bot API Message object as Telegram holds it now (after edits)."""
        return self.raw["message"]

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """Inline keyboard buttons, row by row, flattened."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]

    @property
    def button_urls(self) -> list[str]:
        return [b["url"] for b in self.buttons if "url" in b]

    @property
    def callback_data(self) -> list[str]:
        return [b["callback_data"] for b in self.buttons if "callback_data" in b]

    @property
    def document(self) -> dict[str, Any] | None:
        return self.raw.get("document")

    @property
    def document_bytes(self) -> bytes | None:
        doc = self.document
        return base64.b64decode(doc["content_b64"]) if doc else None

    @property
    def photo(self) -> dict[str, Any] | None:
        """A photo message's largest size: file_id, file_name, mime_type, size, caption."""
        return self.raw.get("photo")

    @property
    def photo_bytes(self) -> bytes | None:
        """The image the bot sent (its largest size), as uploaded."""
        photo = self.photo
        return base64.b64decode(photo["content_b64"]) if photo else None

    @property
    def invoice(self) -> dict[str, Any] | None:
        return self.raw.get("invoice")


Predicate = Callable[[SentMessage], bool]


class EmulatorClient:
    """`async with EmulatorClient(base_url) as tg: await tg.create_user(1, "Ann")`."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> EmulatorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        async with self._session.request(
            method, self.base_url + path, json=body, params=params
        ) as response:
            if response.content_type != "application/json":
                return await response.read()
            data = await response.json()
            if response.status >= 400:
                raise EmulatorError(response.status, data.get("error", str(data)))
            return data

    # --- setup ------------------------------------------------------------------------------

    async def reset(self) -> None:
        await self._request("POST", "/control/reset")

    async def create_bot(
        self,
        token: str,
        *,
        username: str | None = None,
        first_name: str | None = None,
        can_read_all_group_messages: bool | None = None,
    ) -> dict[str, Any]:
        return await self._request(
            "POST",
            "/control/bots",
            {
                "token": token,
                "username": username,
                "first_name": first_name,
                "can_read_all_group_messages": can_read_all_group_messages,
            },
        )

    async def bot_state(self, bot_id: int) -> dict[str, Any]:
        return await self._request("GET", f"/control/bots/{bot_id}")

    async def create_user(
        self,
        user_id: int,
        first_name: str | None = None,
        *,
        username: str | None = None,
        last_name: str | None = None,
        language_code: str | None = None,
        is_bot: bool = False,
        is_premium: bool = False,
    ) -> dict[str, Any]:
        return await self._request(
            "POST",
            "/control/users",
            {
                "id": user_id,
                "first_name": first_name,
                "username": username,
                "last_name": last_name,
                "language_code": language_code,
                "is_bot": is_bot,
                "is_premium": is_premium,
            },
        )

    async def create_chat(
        self,
        chat_id: int,
        *,
        creator_id: int,
        type: str = "supergroup",
        title: str | None = None,
        username: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        return await self._request(
            "POST",
            "/control/chats",
            {
                "id": chat_id,
                "type": type,
                "title": title,
                "creator_id": creator_id,
                "username": username,
                "description": description,
            },
        )

    async def chat(self, chat_id: int) -> dict[str, Any]:
        return await self._request("GET", f"/control/chats/{chat_id}")

    async def promote(
        self,
        chat_id: int,
        user_id: int,
        rights: Mapping[str, bool] | None = None,
        *,
        by: int | None = None,
    ) -> dict[str, Any]:
        """Make an administrator (adds them if absent). rights=None: can_manage_chat,
        can_invite_users, can_restrict_members, can_delete_messages."""
        return await self._request(
            "POST",
            f"/control/chats/{chat_id}/admins",
            {"user_id": user_id, "rights": dict(rights) if rights is not None else None, "by": by},
        )

    async def demote(self, chat_id: int, user_id: int, *, by: int | None = None) -> dict[str, Any]:
        return await self._request(
            "DELETE", f"/control/chats/{chat_id}/admins/{user_id}", query={"by": by}
        )

    async def add_member(
        self, chat_id: int, user_id: int, *, by: int | None = None
    ) -> dict[str, Any]:
        return await self._request(
            "POST", f"/control/chats/{chat_id}/members", {"user_id": user_id, "by": by}
        )

    async def leave_chat(self, chat_id: int, user_id: int) -> None:
        await self._request("DELETE", f"/control/chats/{chat_id}/members/{user_id}")

    # --- users acting -----------------------------------------------------------------------

    async def send_text(
        self,
        from_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        bot_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        """The user writes to the bot (chat_id None: their private chat) or in a group."""
        data = await self._request(
            "POST",
            "/control/messages",
            {
                "from_id": from_id,
                "text": text,
                "chat_id": chat_id,
                "bot_id": bot_id,
                "reply_to_message_id": reply_to_message_id,
            },
        )
        return int(data["message_id"])

    async def press_button(
        self, from_id: int, message_id: int, data: str, *, chat_id: int | None = None
    ) -> str:
        """Press the inline button with callback `data`; returns the callback_query id."""
        result = await self._request(
            "POST",
            "/control/callbacks",
            {"from_id": from_id, "chat_id": chat_id, "message_id": message_id, "data": data},
        )
        return str(result["callback_query_id"])

    async def callback_answer(self, callback_query_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/control/callbacks/{callback_query_id}")

    async def join_by_link(self, user_id: int, invite_link: str) -> str:
        """ "joined" | "requested" | "already_member" | "invalid" | "revoked" | "expired" |
        "banned" | "limit_reached"."""
        data = await self._request(
            "POST", "/control/join", {"user_id": user_id, "invite_link": invite_link}
        )
        return str(data["result"])

    async def block_bot(self, user_id: int, *, bot_id: int | None = None) -> None:
        await self._request("POST", f"/control/users/{user_id}/block", {"bot_id": bot_id})

    async def unblock_bot(self, user_id: int, *, bot_id: int | None = None) -> None:
        await self._request("POST", f"/control/users/{user_id}/unblock", {"bot_id": bot_id})

    async def pay_invoice(
        self,
        user_id: int,
        message_id: int,
        *,
        chat_id: int | None = None,
        timeout: float = 10.0,
        deliver: bool = True,
    ) -> dict[str, Any]:
        """Pay an invoice message; {"status": "paid"|"declined"|"timeout", ...}. `deliver`
        false: the successful_payment update is lost (the payment still happened)."""
        return await self._request(
            "POST",
            "/control/invoices/pay",
            {
                "user_id": user_id,
                "chat_id": chat_id,
                "message_id": message_id,
                "timeout": timeout,
                "deliver": deliver,
            },
        )

    # --- Telegram Stars (stars_control.py) --------------------------------------------------

    async def pay_invoice_link(
        self, user_id: int, link: str, *, timeout: float = 10.0, deliver: bool = True
    ) -> dict[str, Any]:
        """Pay an invoice link (a subscription starts with it); {"status": ...}."""
        return await self._request(
            "POST",
            "/control/stars/links/pay",
            {"user_id": user_id, "link": link, "timeout": timeout, "deliver": deliver},
        )

    async def star_subscriptions(self) -> list[dict[str, Any]]:
        return await self._request("GET", "/control/stars/subscriptions")

    async def star_subscription_action(self, charge_id: str, action: str) -> dict[str, Any]:
        """The user cancels / re-enables ("cancel" / "renew") it, or its next renewal fails
        ("fail")."""
        return await self._request(
            "POST", f"/control/stars/subscriptions/{charge_id}", {"action": action}
        )

    async def star_transactions(self, bot_id: int | None = None) -> list[dict[str, Any]]:
        """The bot's Star transactions, oldest first."""
        return await self._request("GET", "/control/stars/transactions", query={"bot_id": bot_id})

    async def resend_payment(self, charge_id: str) -> int:
        """Telegram sends the payment's successful_payment message again (a new update)."""
        r = await self._request("POST", f"/control/stars/payments/{charge_id}/resend")
        return int(r["message_id"])

    async def telegram_refund(self, charge_id: str) -> None:
        """Telegram refunds a Star payment by itself (the bot gets refunded_payment)."""
        await self._request("POST", f"/control/stars/payments/{charge_id}/refund")

    async def payments(self) -> list[dict[str, Any]]:
        return await self._request("GET", "/control/payments")

    # --- reading ----------------------------------------------------------------------------

    async def sent_messages(
        self,
        chat_id: int,
        *,
        since: int | None = None,
        bot_id: int | None = None,
        include_deleted: bool = False,
        everyone: bool = False,
    ) -> list[SentMessage]:
        """Messages the bot(s) sent to a chat (everyone=True: users' messages too), oldest
        first, as they are now (edits applied)."""
        data = await self._request(
            "GET",
            f"/control/chats/{chat_id}/messages",
            query={
                "since": since,
                "bot_id": bot_id,
                "include_deleted": "1" if include_deleted else None,
                "sender": "all" if everyone else None,
            },
        )
        return [SentMessage.from_json(item) for item in data]

    async def wait_for_message(
        self,
        chat_id: int,
        predicate: Predicate | None = None,
        *,
        timeout: float = 5.0,
        since: int | None = None,
    ) -> SentMessage:
        """Poll until a bot message in the chat matches `predicate` (any message if None)."""
        deadline = time.monotonic() + timeout
        while True:
            for message in await self.sent_messages(chat_id, since=since):
                if predicate is None or predicate(message):
                    return message
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no matching bot message in chat {chat_id} after {timeout}s")
            await asyncio.sleep(0.05)

    async def member_status(self, chat_id: int, user_id: int) -> str:
        return str((await self.chat_member(chat_id, user_id))["status"])

    async def chat_member(self, chat_id: int, user_id: int) -> dict[str, Any]:
        return await self._request("GET", f"/control/chats/{chat_id}/members/{user_id}")

    async def invite_links(self, chat_id: int) -> list[dict[str, Any]]:
        return await self._request("GET", f"/control/chats/{chat_id}/invite_links")

    async def create_invite_link(
        self, chat_id: int, creator_id: int, **fields: Any
    ) -> dict[str, Any]:
        """A link made by a human admin in the app (name, expire_date, member_limit,
        creates_join_request)."""
        return await self._request(
            "POST", f"/control/chats/{chat_id}/invite_links", {"creator_id": creator_id, **fields}
        )

    async def join_requests(self, chat_id: int) -> list[dict[str, Any]]:
        return await self._request("GET", f"/control/chats/{chat_id}/join_requests")

    async def calls(
        self, method: str | None = None, *, bot_id: int | None = None, since: int | None = None
    ) -> list[dict[str, Any]]:
        """The Bot API call log: seq, at, bot_id, method, params, ok, error_code, description."""
        return await self._request(
            "GET", "/control/calls", query={"method": method, "bot_id": bot_id, "since": since}
        )

    async def pending_updates(self, bot_id: int | None = None) -> int:
        data = await self._request("GET", "/control/updates/pending", query={"bot_id": bot_id})
        return int(data["count"])

    async def file_bytes(self, file_id: str) -> bytes:
        return bytes(await self._request("GET", f"/control/files/{file_id}"))

    # --- bending the API --------------------------------------------------------------------

    async def set_rate_limit(
        self, global_per_second: float | None = None, per_chat_per_second: float | None = None
    ) -> dict[str, Any]:
        """Per-bot budgets; None switches a limit off. Over budget: 429 with retry_after."""
        return await self._request(
            "POST",
            "/control/rate_limits",
            {"global_per_second": global_per_second, "per_chat_per_second": per_chat_per_second},
        )

    async def inject_fault(
        self,
        method: str | None = None,
        *,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int | None = None,
        count: int = 1,
        when: str = "before",
        delay: float = 0.0,
        raw_body: str | None = None,
        chat_id: int | str | None = None,
    ) -> dict[str, Any]:
        """The next `count` calls of `method` (None: any) about `chat_id` (None: any chat)
        fail with error_code."""
        return await self._request(
            "POST",
            "/control/faults",
            {
                "method": method,
                "error_code": error_code,
                "description": description,
                "retry_after": retry_after,
                "count": count,
                "when": when,
                "delay": delay,
                "raw_body": raw_body,
                "chat_id": chat_id,
            },
        )

    async def redeliver_update(
        self, update_id: int | None = None, *, bot_id: int | None = None
    ) -> dict[str, Any]:
        """Send a confirmed update again (same update_id; None: the newest confirmed), as
        Telegram does when the bot's confirmation was lost; returns the update."""
        return await self._request(
            "POST", "/control/updates/redeliver", {"update_id": update_id, "bot_id": bot_id}
        )

    async def lose_webhook_answers(self, count: int = 1, *, bot_id: int | None = None) -> None:
        """The next `count` webhook answers are lost on the way back: each of those updates
        is delivered again, as Telegram does after a timeout."""
        await self._request(
            "POST", "/control/updates/redeliver", {"lose_answers": count, "bot_id": bot_id}
        )

    async def clear_faults(self) -> None:
        await self._request("DELETE", "/control/faults")

    async def stats(self) -> dict[str, Any]:
        return await self._request("GET", "/control/stats")

    async def advance_clock(self, seconds: float) -> float:
        data = await self._request("POST", "/control/clock", {"advance": seconds})
        return float(data["now"])

    async def now(self) -> float:
        return float((await self._request("GET", "/control/clock"))["now"])

    # --- channels (channel_control.py) ----------------------------------------------------

    async def post_in_channel(self, chat_id: int, from_id: int, text: str) -> int:
        """An admin with can_post_messages (or the creator) posts; returns the message id."""
        data = await self._request(
            "POST", f"/control/chats/{chat_id}/posts", {"from_id": from_id, "text": text}
        )
        return int(data["message_id"])

    async def forward_to_bot(
        self, from_id: int, from_chat_id: int, message_id: int, *, bot_id: int | None = None
    ) -> int:
        """The user forwards a channel post to their private chat with the bot."""
        data = await self._request(
            "POST",
            "/control/forwards",
            {
                "from_id": from_id,
                "from_chat_id": from_chat_id,
                "message_id": message_id,
                "bot_id": bot_id,
            },
        )
        return int(data["message_id"])

    async def renew_subscription(self, chat_id: int, user_id: int) -> dict[str, Any]:
        """Telegram charges the next 30 days of a Star subscription: until_date moves on."""
        return await self._request(
            "POST", "/control/channel_subscriptions/renew", {"chat_id": chat_id, "user_id": user_id}
        )

    async def channel_subscriptions(self) -> list[dict[str, Any]]:
        return await self._request("GET", "/control/channel_subscriptions")
