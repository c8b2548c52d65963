"""The parametrized `Response[...]` models of the Bot API methods we call, kept alive.

aiogram's `check_response` builds `Response[method.__returning__]` on every call. pydantic
keeps parametrized generic models only in a weak cache, so once a call's response is dropped
the class goes with it, and the next call creates and validates the whole model class again
(~6 % of the service's CPU while invites go out). Holding one strong reference per return
type here, from import (start-up) on, turns every later `Response[...]` into a cache hit.
"""

from __future__ import annotations

from typing import Any

from aiogram.methods import (
    AnswerCallbackQuery,
    ApproveChatJoinRequest,
    BanChatMember,
    CreateChatInviteLink,
    DeclineChatJoinRequest,
    DeleteWebhook,
    GetChatMember,
    GetMe,
    GetUpdates,
    Response,
    RevokeChatInviteLink,
    SendDocument,
    SendMessage,
    SendPhoto,
    SetMyCommands,
    SetWebhook,
    TelegramMethod,
    UnbanChatMember,
)

# The methods gatepass calls (bot/gateway.py, bot/polling.py, bot/telegram.py, the
# handlers' replies); a method missing here still works, it only pays the rebuild.
_METHODS: tuple[type[TelegramMethod[Any]], ...] = (
    CreateChatInviteLink,
    RevokeChatInviteLink,
    ApproveChatJoinRequest,
    DeclineChatJoinRequest,
    BanChatMember,
    UnbanChatMember,
    SendMessage,
    SendDocument,
    SendPhoto,
    AnswerCallbackQuery,
    GetChatMember,
    GetMe,
    GetUpdates,
    SetMyCommands,
    SetWebhook,
    DeleteWebhook,
)

RESPONSE_TYPES: dict[type[TelegramMethod[Any]], type[Response[Any]]] = {
    m: Response[m.__returning__]  # type: ignore[name-defined]  # (a runtime type: mypy reads a name)
    for m in _METHODS
}
