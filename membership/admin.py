"""Owner's hand on access: /grant and /revoke by user reference, and a buyer's lost invite.

The owner's right to the group is checked by the caller (catalog.find_managed_group); these
functions take the group as given and work in the caller's transaction. Grants go through
grant_days and revocations through end_access, so the invite, the removal and the notices
travel through the outbox like any paid change, and both are in audit_log with the owner as
the actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from membership.durations import format_duration
from membership.errors import RuleError
from membership.grants import grant_days, hold_links, is_active
from membership.links import account_on, other_platform
from membership.removal import ENDED, end_access
from storage.models import ChatGroup, Invite, Membership, User, stored_id
from storage.queries import enqueue, get_or_create_user


@dataclass(frozen=True)
class UserRef:
    """Who an owner means: `@username` (someone the bot has met) or a numeric platform id."""

    username: str | None = None
    platform_user_id: str | None = None

    def __post_init__(self) -> None:
        if (self.username is None) == (self.platform_user_id is None):
            raise ValueError("a UserRef is a username or a platform id")

    def __str__(self) -> str:
        return f"@{self.username}" if self.username else str(self.platform_user_id)


def display_name(user: User) -> str:
    """`@bob (2002)`, or `Bob (2002)` without a username."""
    name = f"@{user.username}" if user.username else (user.first_name or "")
    return f"{name} ({user.platform_user_id})" if name else user.platform_user_id


async def find_user(session: AsyncSession, platform: str, ref: UserRef) -> User | None:
    if ref.username is not None and platform == "wechat":
        # WeChat has no usernames: a name is the one /members shows (first_name, as the
        # contact calls themselves), or an account's own WeChat ID stored as its contact id.
        name = ref.username.lower()
        return (
            await session.execute(
                select(User)
                .where(
                    col(User.platform) == platform,
                    (func.lower(col(User.first_name)) == name)
                    | (func.lower(col(User.platform_user_id)) == name),
                )
                .order_by(col(User.id))
                .limit(1)
            )
        ).scalar_one_or_none()
    if ref.username is not None:
        # Usernames are case-insensitive on Telegram; we store them as last seen.
        return (
            await session.execute(
                select(User)
                .where(
                    col(User.platform) == platform,
                    func.lower(col(User.username)) == ref.username.lower(),
                )
                .order_by(col(User.id))
                .limit(1)
            )
        ).scalar_one_or_none()
    return (
        await session.execute(
            select(User).where(
                col(User.platform) == platform, col(User.platform_user_id) == ref.platform_user_id
            )
        )
    ).scalar_one_or_none()


@dataclass(frozen=True)
class Granted:
    user: User
    membership: Membership
    new_user: bool  # we had never met them: the bot cannot message them until they /start


async def grant_access(
    session: AsyncSession,
    actor: User,
    group: ChatGroup,
    ref: UserRef,
    duration_days: int | None,
    now: datetime,
) -> Granted:
    """Give `ref` access to `group` for `duration_days` more (None = lifetime).

    A numeric id we have never seen gets a user row, so the access waits for them; a
    username must be one we know (only Telegram knows who it is). RuleError: `user_unknown`.
    """
    user = await find_user(session, group.platform, ref)
    new_user = False
    if user is None:
        # Someone known on the other platform (a linked owner manages both: on WeChat a
        # number is a Telegram id, on Telegram `@name` a WeChat name): the access goes to
        # their account on the group's platform, or waits parked on theirs until /link.
        other = await find_user(session, other_platform(group.platform), ref)
        if other is not None:
            await hold_links(session, stored_id(other))  # no /link moves it meanwhile
            user = await account_on(session, other, group.platform)
    if user is None:
        if ref.platform_user_id is None or not _fits(group.platform, ref.platform_user_id):
            # Not one of ours, nor an id this platform could have: a user row made from it
            # would hold access nobody can ever use.
            raise RuleError("user_unknown", ref=str(ref))
        user = await get_or_create_user(session, group.platform, ref.platform_user_id, now)
        new_user = True
    m = await grant_days(
        session,
        user,
        group,
        duration_days,
        now,
        actor=f"user:{actor.id}",
        reason=f"granted by the owner ({format_duration(duration_days)})",
    )
    enqueue(
        session,
        "notify",
        user.platform,
        {
            "user_id": user.platform_user_id,
            "key": "granted_by_owner" if m.expires_at else "granted_by_owner_lifetime",
            "params": {
                "group": group.title,
                "until": m.expires_at.isoformat() if m.expires_at else None,
            },
            "language": user.language,
        },
        now,
    )
    return Granted(user, m, new_user)


def _fits(platform: str, platform_user_id: str) -> bool:
    """Could this be a user id of `platform`? Telegram's are numbers."""
    return platform != "telegram" or platform_user_id.isdigit()


async def revocable(
    session: AsyncSession, group: ChatGroup, ref: UserRef
) -> tuple[User, Membership]:
    """The user and their not-yet-ended membership of `group`, for /revoke.

    RuleError: `revoke_owner` (the group's owner), `revoke_nothing` (no such access).
    """
    user = await find_user(session, group.platform, ref)
    if user is not None and user.id == group.owner_user_id:
        raise RuleError("revoke_owner", user=display_name(user), group=group.title)
    m = None if user is None else await _membership(session, user, group)
    if m is None or m.status in ENDED:
        # Someone named by their account on the other platform: the access is their linked
        # account's, or, bought there before they linked, parked on that account (/members
        # lists it under its id). The owner's to end too, or a later /link delivers it.
        other = await find_user(session, other_platform(group.platform), ref)
        if other is not None:
            other = await account_on(session, other, group.platform)
        m = None if other is None else await _membership(session, other, group)
        user = other
        if user is not None and user.id == group.owner_user_id:
            raise RuleError("revoke_owner", user=display_name(user), group=group.title)
    if user is None or m is None or m.status in ENDED:
        raise RuleError("revoke_nothing", user=str(ref), group=group.title)
    return user, m


async def _membership(session: AsyncSession, user: User, group: ChatGroup) -> Membership | None:
    return (
        await session.execute(
            select(Membership).where(
                col(Membership.user_id) == user.id, col(Membership.chat_group_id) == group.id
            )
        )
    ).scalar_one_or_none()


async def revoke_access(
    session: AsyncSession, actor: User, group: ChatGroup, ref: UserRef, now: datetime
) -> tuple[User, Membership]:
    """End `ref`'s access to `group` now: status revoked, removed from the chat (ban +
    unban), unused invites revoked, the user told. RuleError as `revocable`.

    An auto-renewing subscription is the caller's to stop first (billing's
    cancel_auto_renew): membership/ does not talk to payment providers.
    """
    user, m = await revocable(session, group, ref)
    done = await end_access(
        session,
        m,
        now,
        status="revoked",
        actor=f"user:{actor.id}",
        reason="revoked by the owner",
        notice_key="access_revoked_owner",
    )
    if not done:  # ended by someone else a moment ago
        raise RuleError("revoke_nothing", user=str(ref), group=group.title)
    return user, m


async def resend_invite(
    session: AsyncSession, user: User, membership_id: int, now: datetime
) -> ChatGroup:
    """A buyer's "send me my invite again" (say the first message could not reach them).

    An unused, unexpired invite is sent again; otherwise a new one is made. RuleError:
    `cancel_not_found` (not theirs), `my_not_active` (nothing to join).
    """
    row = (
        await session.execute(
            select(Membership, ChatGroup)
            .join(ChatGroup, col(ChatGroup.id) == col(Membership.chat_group_id))
            .where(col(Membership.id) == membership_id, col(Membership.user_id) == user.id)
        )
    ).first()
    if row is None:
        raise RuleError("cancel_not_found")
    m, group = row
    if not is_active(m, now) or not group.active:
        raise RuleError("my_not_active", group=group.title)
    link = (
        await session.execute(
            select(col(Invite.link))
            .where(
                col(Invite.membership_id) == m.id,
                col(Invite.revoked).is_(False),
                col(Invite.used_by).is_(None),
                col(Invite.expires_at) > now,
            )
            .order_by(col(Invite.id).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if link is None:
        enqueue(session, "deliver_invite", user.platform, {"membership_id": m.id}, now)
        return group
    enqueue(
        session,
        "notify",
        user.platform,
        {
            "user_id": user.platform_user_id,
            "key": "invite_again",
            "params": {
                "group": group.title,
                "link": link,
                "until": m.expires_at.isoformat() if m.expires_at else None,
            },
            "language": user.language,
            "buttons": [{"text_key": "btn_join", "url": link, "params": {"group": group.title}}],
        },
        now,
    )
    return group
