"""Membership changes and the updates they cause: joins, join requests, bans, promotions.

Every status change goes through `change_member`, which emits `my_chat_member` to the bot it
concerns and `chat_member` to the chat's administrator bots, as Telegram does.
"""

from __future__ import annotations

import secrets
from typing import Any

from .errors import ControlError, bad_request
from .state import ALL_ADMIN_RIGHTS, BotAccount, Chat, InviteLink, JoinRequest, Member
from .world import World

MAX_LINK_NAME = 32
MIN_BAN_SECONDS = 30
MAX_BAN_SECONDS = 366 * 24 * 3600


def change_member(
    world: World,
    chat: Chat,
    user_id: int,
    new: Member,
    *,
    actor_id: int,
    invite_link: InviteLink | None = None,
    via_join_request: bool = False,
) -> None:
    old = world.member(chat, user_id)
    chat.members[user_id] = new
    if (old.status, old.rights, old.until_date) == (new.status, new.rights, new.until_date):
        return
    user = world.users[user_id]
    actor = world.users[actor_id]
    for bot in list(world.bots.values()):
        if bot.id == user_id:
            kind = "my_chat_member"
        elif world.member(chat, bot.id).status == "administrator":
            kind = "chat_member"
        else:
            continue
        payload: dict[str, Any] = {
            "chat": chat.to_api(),
            "from": actor.to_api(),
            "date": world.now(),
            "old_chat_member": old.to_api(user, chat.type, bot.id),
            "new_chat_member": new.to_api(user, chat.type, bot.id),
        }
        if invite_link is not None:
            payload["invite_link"] = invite_link.to_api(chat, world.users, bot.id)
        if via_join_request:
            payload["via_join_request"] = True
        bot.updates.push(kind, payload)


def _joined(
    world: World,
    chat: Chat,
    user_id: int,
    actor_id: int,
    link: InviteLink | None,
    via_join_request: bool = False,
) -> None:
    chat.join_requests.pop(user_id, None)
    new = Member(user_id=user_id, status="member", joined_via=link.url if link else None)
    change_member(
        world,
        chat,
        user_id,
        new,
        actor_id=actor_id,
        invite_link=link,
        via_join_request=via_join_request,
    )
    world.service_message(
        chat, world.users[actor_id], {"new_chat_members": [world.users[user_id].to_api()]}
    )


def _left(world: World, chat: Chat, user_id: int, actor_id: int, new: Member) -> None:
    was_present = world.member(chat, user_id).present
    change_member(world, chat, user_id, new, actor_id=actor_id)
    if was_present:
        world.service_message(
            chat, world.users[actor_id], {"left_chat_member": world.users[user_id].to_api()}
        )


# --- invite links ---------------------------------------------------------------------------


def link_fields(world: World, values: dict[str, Any]) -> dict[str, Any]:
    """Validate createChatInviteLink/editChatInviteLink fields (already typed)."""
    name = values.get("name") or None
    if name is not None and len(name) > MAX_LINK_NAME:
        # TDLib cleans the name and cuts it to 32 characters rather than refusing it.
        name = name[:MAX_LINK_NAME]
    expire_date = values.get("expire_date") or None
    if expire_date is not None and expire_date <= world.now():
        raise bad_request("EXPIRE_DATE_INVALID")
    member_limit = values.get("member_limit") or None
    if member_limit is not None and not 1 <= member_limit <= 99999:
        raise bad_request("USAGE_LIMIT_INVALID")
    creates_join_request = bool(values.get("creates_join_request"))
    if creates_join_request and member_limit:
        raise bad_request(
            "member limit can't be specified for links requiring administrator approval"
        )
    return {
        "name": name,
        "expire_date": expire_date,
        "member_limit": member_limit,
        "creates_join_request": creates_join_request,
    }


def create_link(world: World, chat: Chat, creator_id: int, values: dict[str, Any]) -> InviteLink:
    fields = link_fields(world, values)
    # Real links are https://t.me/+ followed by 16 URL-safe characters.
    link = InviteLink(
        url="https://t.me/+" + secrets.token_urlsafe(12),
        creator_id=creator_id,
        created_at=world.now(),
        **fields,
    )
    chat.links[link.url] = link
    return link


def join_by_link(world: World, user_id: int, url: str) -> tuple[str, Chat | None]:
    """What happens when a user opens an invite link: joined, requested, or why not."""
    if world.users[user_id].is_bot:
        raise ControlError(400, "bots cannot join by invite link; add or promote them instead")
    found = world.find_link(url.strip())
    if found is None:
        return "invalid", None
    chat, link = found
    if link.is_revoked:
        return "revoked", chat
    if link.expire_date and link.expire_date <= world.now():
        return "expired", chat
    member = world.member(chat, user_id)
    if member.present:
        return "already_member", chat
    if member.status == "kicked":
        return "banned", chat
    if link.subscription_period:
        from .channels import join_subscription  # (channels.py builds on this module)

        return join_subscription(world, chat, user_id, link), chat
    if link.creates_join_request:
        if user_id in chat.join_requests:
            return "requested", chat  # the app shows the pending request; no new update
        request = JoinRequest(user_id=user_id, date=world.now(), invite_link=link.url)
        chat.join_requests[user_id] = request
        world.join_history.append((chat.id, user_id, request.date))
        user = world.users[user_id]
        for bot in world.admin_bots(chat, "can_invite_users"):
            bot.updates.push(
                "chat_join_request",
                {
                    "chat": chat.to_api(),
                    "from": user.to_api(),
                    "user_chat_id": user_id,
                    "date": request.date,
                    "invite_link": link.to_api(chat, world.users, bot.id),
                },
            )
        return "requested", chat
    if link.member_limit and world.link_usage(chat, link) >= link.member_limit:
        return "limit_reached", chat
    _joined(world, chat, user_id, user_id, link)
    return "joined", chat


# --- join requests --------------------------------------------------------------------------


def _join_request_rights(world: World, bot: BotAccount, chat: Chat) -> None:
    if chat.private_user is not None:
        raise bad_request("the chat can't have join requests")
    world.require_right(
        bot, chat, "can_invite_users", bad_request("not enough rights to manage chat join requests")
    )


def approve_join(world: World, bot: BotAccount, chat: Chat, user_id: int) -> None:
    _join_request_rights(world, bot, chat)
    request = chat.join_requests.get(user_id)
    if request is None:
        if world.member(chat, user_id).present:
            raise bad_request("USER_ALREADY_PARTICIPANT")
        raise bad_request("HIDE_REQUESTER_MISSING")
    link = chat.links.get(request.invite_link or "")
    _joined(world, chat, user_id, bot.id, link, via_join_request=True)


def decline_join(world: World, bot: BotAccount, chat: Chat, user_id: int) -> None:
    _join_request_rights(world, bot, chat)
    if chat.join_requests.pop(user_id, None) is None:
        raise bad_request("HIDE_REQUESTER_MISSING")


# --- bans -----------------------------------------------------------------------------------


def _restrict_checks(world: World, bot: BotAccount, chat: Chat, user_id: int) -> Member:
    if chat.private_user is not None:
        raise bad_request("can't ban members in private chats")
    world.require_right(
        bot,
        chat,
        "can_restrict_members",
        bad_request("not enough rights to restrict/unrestrict chat member"),
    )
    if user_id not in world.users:
        raise bad_request("user not found")
    return world.member(chat, user_id)


def ban(
    world: World, bot: BotAccount, chat: Chat, user_id: int, until_date: int, revoke_messages: bool
) -> None:
    member = _restrict_checks(world, bot, chat, user_id)
    if user_id == bot.id:
        raise bad_request("can't restrict self")
    if member.status == "creator":
        raise bad_request("can't remove chat owner")
    if member.status == "administrator" and member.promoted_by != bot.id:
        raise bad_request("user is an administrator of the chat")
    now = world.now()
    # "If user is banned for more than 366 days or less than 30 seconds from the current time
    # they are considered to be banned forever"; basic groups only have permanent bans.
    if (
        chat.type == "group"
        or until_date - now < MIN_BAN_SECONDS
        or until_date - now > MAX_BAN_SECONDS
    ):
        until_date = 0
    chat.join_requests.pop(user_id, None)
    _left(
        world,
        chat,
        user_id,
        bot.id,
        Member(user_id=user_id, status="kicked", until_date=until_date),
    )
    if revoke_messages or chat.type in ("supergroup", "channel"):
        for stored in chat.messages.values():
            if stored.sender_id == user_id:
                stored.deleted = True


def unban(world: World, bot: BotAccount, chat: Chat, user_id: int, only_if_banned: bool) -> None:
    if chat.type == "group":
        raise bad_request("method is available for supergroup and channel chats only")
    member = _restrict_checks(world, bot, chat, user_id)
    if member.status == "kicked":
        change_member(world, chat, user_id, Member(user_id=user_id, status="left"), actor_id=bot.id)
        return
    if only_if_banned:
        return
    if user_id == bot.id:
        raise bad_request("can't unban self")
    if member.status == "creator":
        raise bad_request("can't remove chat owner")
    if member.status == "administrator":
        raise bad_request("user is an administrator of the chat")
    # "By default, this method guarantees that after the call the user is not a member of the
    # chat": unbanning a member removes them.
    if member.present:
        _left(world, chat, user_id, bot.id, Member(user_id=user_id, status="left"))


# --- control-side changes (what a human admin or the user does in the app) -------------------


def add_member(world: World, chat: Chat, user_id: int, by: int | None) -> Member:
    actor_id = by if by is not None else _creator_id(chat)
    if world.member(chat, user_id).present:
        raise ControlError(409, f"user {user_id} is already in chat {chat.id}")
    _joined(world, chat, user_id, actor_id, None)
    return chat.members[user_id]


def leave(world: World, chat: Chat, user_id: int) -> None:
    member = world.member(chat, user_id)
    if not member.present:
        raise ControlError(409, f"user {user_id} is not in chat {chat.id}")
    if member.status == "creator":
        raise ControlError(400, "the creator cannot leave in the emulator")
    _left(world, chat, user_id, user_id, Member(user_id=user_id, status="left"))


def promote(
    world: World, chat: Chat, user_id: int, rights: dict[str, bool], by: int | None
) -> Member:
    unknown = set(rights) - ALL_ADMIN_RIGHTS
    if unknown:
        raise ControlError(400, f"unknown rights: {sorted(unknown)}")
    old = world.member(chat, user_id)
    if old.status == "creator":
        raise ControlError(400, "the creator has every right already")
    actor_id = by if by is not None else _creator_id(chat)
    if chat.type == "channel":
        # TDLib: can_restrict_members is "always true for channels" (the app has no such
        # switch for channel admins), so every channel admin may ban and unban.
        rights = {**rights, "can_restrict_members": True}
    new = Member(
        user_id=user_id,
        status="administrator",
        rights=dict(rights),
        promoted_by=actor_id,
        joined_via=old.joined_via,
    )
    was_present = old.present
    change_member(world, chat, user_id, new, actor_id=actor_id)
    if not was_present:
        world.service_message(
            chat, world.users[actor_id], {"new_chat_members": [world.users[user_id].to_api()]}
        )
    return new


def demote(world: World, chat: Chat, user_id: int, by: int | None) -> Member:
    old = world.member(chat, user_id)
    if old.status != "administrator":
        raise ControlError(409, f"user {user_id} is not an administrator")
    actor_id = by if by is not None else _creator_id(chat)
    new = Member(user_id=user_id, status="member", joined_via=old.joined_via)
    change_member(world, chat, user_id, new, actor_id=actor_id)
    return new


def _creator_id(chat: Chat) -> int:
    return next(uid for uid, m in chat.members.items() if m.status == "creator")
