"""Reading chats and members; banning and unbanning."""

from __future__ import annotations

from typing import Any

from .. import membership
from ..errors import bad_request
from ..state import Chat
from .registry import Call, method

_NO_GIFTS = {
    "unlimited_gifts": False,
    "limited_gifts": False,
    "unique_gifts": False,
    "premium_subscription": False,
    "gifts_from_channels": False,
}
_ALL_PERMISSIONS = {
    "can_send_messages": True,
    "can_send_audios": True,
    "can_send_documents": True,
    "can_send_photos": True,
    "can_send_videos": True,
    "can_send_video_notes": True,
    "can_send_voice_notes": True,
    "can_send_polls": True,
    "can_send_other_messages": True,
    "can_add_web_page_previews": True,
    "can_change_info": False,
    "can_invite_users": True,
    "can_pin_messages": False,
    "can_manage_topics": False,
}


def _chat(call: Call) -> Chat:
    return call.world.resolve_chat(call.bot, call.params.string("chat_id"))


def _user_id(call: Call) -> int:
    user_id = call.params.integer("user_id", error="invalid user_id specified")
    if not user_id:
        raise bad_request("invalid user_id specified")
    return user_id


@method("getChat")
async def get_chat(call: Call) -> dict[str, Any]:
    chat = _chat(call)
    info = chat.to_api()
    # ChatFullInfo fields aiogram requires, with Telegram's values for a plain chat.
    info.update(accent_color_id=0, max_reaction_count=11, accepted_gift_types=dict(_NO_GIFTS))
    if chat.private_user is None:
        if chat.description:
            info["description"] = chat.description
        if chat.type != "channel":
            info["permissions"] = dict(_ALL_PERMISSIONS)
    return info


@method("getChatMember")
async def get_chat_member(call: Call) -> dict[str, Any]:
    world = call.world
    chat = _chat(call)
    user_id = _user_id(call)
    if user_id not in world.users:
        raise bad_request("user not found")
    if chat.type == "channel" and world.member(chat, call.bot.id).status != "administrator":
        raise bad_request("member list is inaccessible")
    member = world.member(chat, user_id)
    return member.to_api(world.users[user_id], chat.type, call.bot.id)


@method("getChatAdministrators")
async def get_chat_administrators(call: Call) -> list[dict[str, Any]]:
    world = call.world
    chat = _chat(call)
    if chat.private_user is not None:
        raise bad_request("there are no administrators in the private chat")
    return [
        world.member(chat, uid).to_api(world.users[uid], chat.type, call.bot.id)
        for uid, m in chat.members.items()
        if m.status in ("creator", "administrator")
    ]


@method("getChatMemberCount")
async def get_chat_member_count(call: Call) -> int:
    world = call.world
    chat = _chat(call)
    if chat.private_user is not None:
        return 2
    return sum(1 for uid in list(chat.members) if world.member(chat, uid).present)


@method("banChatMember")
async def ban_chat_member(call: Call) -> bool:
    chat = _chat(call)
    user_id = _user_id(call)
    until = call.params.integer("until_date", 0) or 0
    membership.ban(
        call.world, call.bot, chat, user_id, until, call.params.boolean("revoke_messages")
    )
    return True


@method("unbanChatMember")
async def unban_chat_member(call: Call) -> bool:
    chat = _chat(call)
    user_id = _user_id(call)
    membership.unban(call.world, call.bot, chat, user_id, call.params.boolean("only_if_banned"))
    return True


@method("leaveChat")
async def leave_chat(call: Call) -> bool:
    chat = _chat(call)
    if chat.private_user is not None:
        raise bad_request("chat member status can't be changed in private chats")
    if not call.world.member(chat, call.bot.id).present:
        raise bad_request("bot is not a member of the " + chat.kind_name)
    membership.leave(call.world, chat, call.bot.id)
    return True
