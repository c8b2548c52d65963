"""Star subscription links of channels (createChatSubscriptionInviteLink and its edit)."""

from __future__ import annotations

from typing import Any

from .. import channels
from ..errors import bad_request
from .invites import _managed_chat, _own_link
from .registry import Call, method


@method("createChatSubscriptionInviteLink")
async def create_chat_subscription_invite_link(call: Call) -> dict[str, Any]:
    chat = _managed_chat(call)
    params = call.params
    link = channels.subscription_link(
        call.world,
        call.bot,
        chat,
        params.string("name"),
        params.integer("subscription_period"),
        params.integer("subscription_price"),
    )
    return link.to_api(chat, call.world.users, call.bot.id)


@method("editChatSubscriptionInviteLink")
async def edit_chat_subscription_invite_link(call: Call) -> dict[str, Any]:
    """Only the name of a subscription link can change."""
    chat = _managed_chat(call)
    link = _own_link(call, chat)
    if link.is_revoked:
        raise bad_request("INVITE_HASH_EXPIRED")
    if not link.subscription_period:
        raise bad_request("INVITE_HASH_INVALID")
    link.name = (call.params.string("name") or "")[: channels.MAX_LINK_NAME] or None
    return link.to_api(chat, call.world.users, call.bot.id)
