"""Invite links and join requests."""

from __future__ import annotations

from typing import Any

from .. import membership
from ..errors import bad_request
from ..state import Chat, InviteLink
from .registry import Call, method


def _managed_chat(call: Call) -> Chat:
    chat = call.world.resolve_chat(call.bot, call.params.string("chat_id"))
    if chat.private_user is not None:
        raise bad_request("can't invite members to a private chat")
    call.world.require_right(
        call.bot,
        chat,
        "can_invite_users",
        bad_request("not enough rights to manage chat invite link"),
    )
    return chat


def _fields(call: Call) -> dict[str, Any]:
    params = call.params
    return {
        "name": params.string("name"),
        "expire_date": params.integer("expire_date"),
        "member_limit": params.integer("member_limit"),
        "creates_join_request": params.boolean("creates_join_request"),
    }


def _own_link(call: Call, chat: Chat) -> InviteLink:
    url = (call.params.string("invite_link") or "").strip()
    if not url:
        raise bad_request("invite link must be non-empty")
    link = chat.links.get(url)
    # A bot only ever sees the full URL of its own links, so any other URL is unknown to it.
    if link is None or link.creator_id != call.bot.id:
        raise bad_request("INVITE_HASH_EXPIRED")
    return link


def _answer(call: Call, chat: Chat, link: InviteLink) -> dict[str, Any]:
    return link.to_api(chat, call.world.users, call.bot.id)


@method("createChatInviteLink")
async def create_chat_invite_link(call: Call) -> dict[str, Any]:
    chat = _managed_chat(call)
    link = membership.create_link(call.world, chat, call.bot.id, _fields(call))
    return _answer(call, chat, link)


@method("editChatInviteLink")
async def edit_chat_invite_link(call: Call) -> dict[str, Any]:
    chat = _managed_chat(call)
    link = _own_link(call, chat)
    if link.is_revoked:
        raise bad_request("INVITE_HASH_EXPIRED")
    if link.subscription_period and (
        call.params.has("member_limit") or call.params.boolean("creates_join_request")
    ):
        # A paid link lets in whoever pays: no member limit, no approval step.
        raise bad_request("can't edit subscription link member limit or join request approval")
    # TDLib's editChatInviteLink takes every field, so one left out is reset (no name, no
    # expiry, no limit), not kept: a caller that edits only the name loses the limit.
    fields = membership.link_fields(call.world, _fields(call))
    for key, value in fields.items():
        setattr(link, key, value)
    return _answer(call, chat, link)


@method("revokeChatInviteLink")
async def revoke_chat_invite_link(call: Call) -> dict[str, Any]:
    chat = _managed_chat(call)
    link = _own_link(call, chat)
    link.is_revoked = True
    return _answer(call, chat, link)


def _join_request_target(call: Call) -> tuple[Chat, int]:
    chat = call.world.resolve_chat(call.bot, call.params.string("chat_id"))
    user_id = call.params.integer("user_id", error="invalid user_id specified")
    if not user_id:
        raise bad_request("invalid user_id specified")
    if user_id not in call.world.users:
        raise bad_request("USER_ID_INVALID")
    return chat, user_id


@method("approveChatJoinRequest")
async def approve_chat_join_request(call: Call) -> bool:
    chat, user_id = _join_request_target(call)
    membership.approve_join(call.world, call.bot, chat, user_id)
    return True


@method("declineChatJoinRequest")
async def decline_chat_join_request(call: Call) -> bool:
    chat, user_id = _join_request_target(call)
    membership.decline_join(call.world, call.bot, chat, user_id)
    return True
