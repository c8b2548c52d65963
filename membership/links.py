"""One person, two accounts: /link on one platform gives a one-time code, sending it to the bot
on the other platform binds the two users (account_link). A plan that bundles a Telegram
group and a WeChat room then grants each to the account on its own platform (grants.py).

Access to a room bought before the accounts were linked is "parked" on the buyer's own user
(its platform is not the room's); binding moves it to the new linked account, in the same
transaction that spends the code, and queues its delivery there.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from membership.errors import RuleError
from membership.grants import hold_links, is_active
from storage.models import AccountLink, ChatGroup, LinkCode, Membership, User, stored_id
from storage.queries import audit, enqueue, insert_ignore

PLATFORMS = ("telegram", "wechat")
# No 0/O, 1/I/L: the code is read off one phone and typed into another.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
CODE_TTL = timedelta(minutes=10)
KEEP_USED = timedelta(days=1)  # a spent or lapsed code still says "used"/"expired" this long


class LinkOutcome(StrEnum):
    BOUND = "bound"
    UNKNOWN = "unknown"  # no such code (or not a code at all)
    EXPIRED = "expired"
    USED = "used"
    OWN_PLATFORM = "own_platform"  # made on this same platform: it must come from the other
    ALREADY_LINKED = "already_linked"  # one of the two accounts is linked already


@dataclass(frozen=True)
class IssuedCode:
    code: str
    expires_at: datetime


@dataclass(frozen=True)
class BindResult:
    outcome: LinkOutcome
    other: User | None = None  # the account on the other platform (bound, or already linked)
    moved: int = 0  # parked memberships moved to the account on their group's platform


def other_platform(platform: str) -> str:
    return "wechat" if platform == "telegram" else "telegram"


async def linked_user_id(session: AsyncSession, user_id: int) -> int | None:
    """The id of the other side of this user's link, if any."""
    row = (
        await session.execute(
            select(col(AccountLink.telegram_user_id), col(AccountLink.wechat_user_id)).where(
                or_(
                    col(AccountLink.telegram_user_id) == user_id,
                    col(AccountLink.wechat_user_id) == user_id,
                )
            )
        )
    ).first()
    if row is None:
        return None
    return int(row[1] if row[0] == user_id else row[0])


async def linked_account(session: AsyncSession, user_id: int) -> User | None:
    """The user on the other platform linked to this one, if any."""
    other = await linked_user_id(session, user_id)
    return None if other is None else await session.get(User, other)


async def account_on(session: AsyncSession, user: User, platform: str) -> User:
    """The account that holds `user`'s access to a group on `platform`: the user when the
    platforms match, else their linked account; with no link, the user (access parked)."""
    if user.platform == platform or user.id is None:
        return user
    other = await linked_account(session, user.id)
    return other if other is not None and other.platform == platform else user


def _new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


async def issue_link_code(session: AsyncSession, user: User, now: datetime) -> IssuedCode:
    """A fresh one-time code for `user`, valid CODE_TTL; it replaces their earlier codes."""
    assert user.id is not None
    other = await linked_account(session, user.id)
    if other is not None:
        raise RuleError("link_already", platform=other.platform)
    # The user's earlier codes go (one live code per user), and so do everyone's codes a day
    # past their end: the table stays small without a job of its own (the audit log keeps
    # who linked with whom).
    await session.execute(
        delete(LinkCode).where(
            or_(col(LinkCode.user_id) == user.id, col(LinkCode.expires_at) < now - KEEP_USED)
        )
    )
    expires = now + CODE_TTL
    while True:
        code = _new_code()
        # 31^8 codes: a clash with a live one is rare, and the unique index decides it.
        made = await insert_ignore(
            session,
            LinkCode,
            {"code": code, "user_id": user.id, "created_at": now, "expires_at": expires},
            conflict=["code"],
        )
        if made is not None:
            break
    audit(session, f"user:{user.id}", "link.code", f"user:{user.id}", now, None)
    return IssuedCode(code, expires)


def normalise(code: str) -> str:
    return code.strip().upper()


async def bind_link(session: AsyncSession, user: User, code: str, now: datetime) -> BindResult:
    """Bind `user` to the account that made `code` on the other platform. The code is spent
    by a compare-and-set, so of two binds of one code only one succeeds; a refusal changes
    nothing (not even the code)."""
    assert user.id is not None
    code = normalise(code)
    if len(code) != CODE_LENGTH or any(c not in ALPHABET for c in code):
        return BindResult(LinkOutcome.UNKNOWN)
    row = (
        await session.execute(select(LinkCode).where(col(LinkCode.code) == code))
    ).scalar_one_or_none()
    if row is None:
        return BindResult(LinkOutcome.UNKNOWN)
    if row.used_at is not None:
        return BindResult(LinkOutcome.USED)
    if row.expires_at <= now:
        return BindResult(LinkOutcome.EXPIRED)
    issuer = await session.get(User, row.user_id)
    assert issuer is not None and issuer.id is not None
    if issuer.platform == user.platform:
        return BindResult(LinkOutcome.OWN_PLATFORM)
    # Both accounts held until commit: a payment, renewal or refund of either waits for the
    # link and the moved access, or this bind waits for what it parked (grants.hold_links).
    await hold_links(session, user.id, issuer.id)
    await session.refresh(row)  # a bind that held them first may have spent this very code
    if row.used_at is not None:
        return BindResult(LinkOutcome.USED)
    for side in (user, issuer):
        assert side.id is not None
        linked = await linked_account(session, side.id)
        if linked is not None:
            return BindResult(LinkOutcome.ALREADY_LINKED, other=linked)
    telegram, wechat = (user, issuer) if user.platform == "telegram" else (issuer, user)
    try:
        # One savepoint for spending the code and writing the link: a bind that loses a race
        # (the code spent, or either account linked meanwhile) leaves both untouched.
        async with session.begin_nested():
            spent = await session.execute(
                update(LinkCode)
                .where(col(LinkCode.id) == row.id, col(LinkCode.used_at).is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            if spent.rowcount != 1:  # type: ignore[attr-defined]
                return BindResult(LinkOutcome.USED)
            session.add(
                AccountLink(
                    telegram_user_id=stored_id(telegram),
                    wechat_user_id=stored_id(wechat),
                    created_at=now,
                )
            )
            await session.flush()
    except IntegrityError:
        linked = await linked_account(session, user.id)
        return BindResult(LinkOutcome.ALREADY_LINKED, other=linked)
    audit(
        session,
        f"user:{user.id}",
        "link.bind",
        f"user:{issuer.id}",
        now,
        f"telegram user {telegram.id} <-> wechat user {wechat.id}",
    )
    moved = await _move_parked(session, telegram, wechat, now)
    moved += await _move_parked(session, wechat, telegram, now)
    return BindResult(LinkOutcome.BOUND, other=issuer, moved=moved)


async def _move_parked(session: AsyncSession, src: User, dst: User, now: datetime) -> int:
    """Move `src`'s memberships of `dst`'s platform's groups to `dst`. Where `dst` already
    has the group, its access runs to the later end (lifetime wins) and the parked row is
    retired without any removal (it never was in the chat). Returns how many moved."""
    parked = (
        await session.execute(
            select(Membership, ChatGroup)
            .join(ChatGroup, col(ChatGroup.id) == col(Membership.chat_group_id))
            .where(col(Membership.user_id) == src.id, col(ChatGroup.platform) == dst.platform)
            .order_by(col(Membership.id))
            .with_for_update(of=Membership)
        )
    ).all()
    moved = 0
    for p, group in parked:
        held = (
            await session.execute(
                select(Membership)
                .where(col(Membership.user_id) == dst.id, col(Membership.chat_group_id) == group.id)
                .with_for_update()
            )
        ).scalar_one_or_none()
        active = is_active(p, now)
        if held is None:
            p.user_id, p.updated_at = dst.id, now  # type: ignore[assignment]
            target = p
            deliver = active
        else:
            deliver = active and not is_active(held, now)
            if active:
                _merge_into(held, p, now)
            await session.flush()
            await session.delete(p)
            target = held
        await session.flush()
        moved += 1
        audit(
            session,
            f"user:{src.id}",
            "membership.relink",
            f"membership:{target.id}",
            now,
            f"user {src.id} -> {dst.id} group {group.id}",
        )
        if deliver:
            enqueue(
                session,
                "deliver_invite",
                dst.platform,
                {
                    "membership_id": target.id,
                    "chat_id": group.chat_id,
                    "paid": target.plan_id is not None,
                },
                now,
            )
    return moved


def _merge_into(held: Membership, parked: Membership, now: datetime) -> None:
    """`held` (the linked account's own membership) runs at least as long as the active
    `parked` one; a lifetime on either side wins."""
    if not is_active(held, now):
        held.status, held.starts_at, held.reminded_at = "active", now, None
        held.expires_at = parked.expires_at
    elif held.expires_at is not None and (
        parked.expires_at is None or parked.expires_at > held.expires_at
    ):
        held.expires_at, held.reminded_at = parked.expires_at, None
    if held.provider_subscription_id is None and parked.provider_subscription_id is not None:
        held.provider_subscription_id = parked.provider_subscription_id
        held.auto_renew = parked.auto_renew
    if held.plan_id is None:
        held.plan_id = parked.plan_id
    held.updated_at = now
