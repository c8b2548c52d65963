"""Granting and extending access after a payment (or an owner's /grant)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChatGroup, Membership, PlanGroup, User
from storage.queries import AUDIT_INSERT, audit, enqueue, insert_ignore
from storage.sql import Sql


def is_active(m: Any, now: datetime) -> bool:
    """Active and not past its end; `m` is a Membership or a row with status/expires_at."""
    return m.status == "active" and (m.expires_at is None or m.expires_at > now)


def extend(m: Any | None, duration_days: int | None, now: datetime
           ) -> tuple[datetime, datetime | None]:
    """(starts_at, expires_at) after adding a period: paid time left over is never lost."""
    if duration_days is None:
        return (m.starts_at if m is not None and is_active(m, now) else now), None
    if m is not None and is_active(m, now):
        if m.expires_at is None:  # already lifetime
            return m.starts_at, None
        return m.starts_at, m.expires_at + timedelta(days=duration_days)
    return now, now + timedelta(days=duration_days)


async def plan_groups(session: AsyncSession, plan_id: int) -> list[ChatGroup]:
    return list((await session.execute(
        select(ChatGroup).join(PlanGroup, PlanGroup.chat_group_id == ChatGroup.id)
        .where(PlanGroup.plan_id == plan_id).order_by(ChatGroup.id)
    )).scalars().all())


@dataclass(frozen=True)
class Grantee:
    """The few user fields a grant needs (no ORM object: this runs on the webhook hot path)."""

    id: int
    platform: str
    platform_user_id: str
    language: str | None = None


@dataclass(frozen=True)
class _Held:
    """An existing membership as the grant sees it."""

    id: int
    status: str
    starts_at: datetime
    expires_at: datetime | None


_OUTBOX_INSERT = ("INSERT INTO outbox (kind, platform, payload, status, attempts, "
                  "next_attempt_at, created_at) VALUES (?, ?, ?, 'pending', 0, ?, ?)")


async def _grant_groups(
    session: AsyncSession, who: Grantee, groups: list[tuple[int, str, str]],
    duration_days: int | None, now: datetime, *, actor: str, reason: str,
    plan_id: int | None, subscription_id: str | None, paid: bool,
) -> list[int]:
    """Grant or extend `who`'s access to each (group id, title, chat id); queue the invite
    (`paid`: its message thanks for the payment; else it says access was given) or the
    notice. Plain SQL (storage/sql.py; this is on every payment webhook): one locked read of
    the existing memberships, one write per group, one insert each for the audit rows and
    the outbox rows. Returns the membership ids, in the order of `groups`."""
    sql = await Sql.of(session)
    ids = [g for g, _, _ in groups]
    existing = {r[1]: _Held(r[0], r[2], sql.dt(r[3]), sql.dt(r[4])) for r in await sql.all(
        "SELECT id, chat_group_id, status, starts_at, expires_at FROM membership "
        f"WHERE user_id = ? AND chat_group_id IN ({sql.marks(len(ids))}){sql.lock}", (who.id, *ids))}
    audits: list[tuple[object, ...]] = []
    outbox: list[tuple[object, ...]] = []
    result: list[int] = []
    at = sql.ts(now)
    for group_id, title, chat_id in groups:
        m = existing.get(group_id)
        while True:
            was_active = m is not None and is_active(m, now)
            starts, expires = extend(m, duration_days, now)
            values: dict[str, object] = {"status": "active", "starts_at": starts,
                                         "expires_at": expires, "updated_at": now}
            if plan_id:
                values["plan_id"] = plan_id
            if not was_active:
                values["reminded_at"] = None
            if subscription_id:
                values.update(provider_subscription_id=subscription_id, auto_renew=True)
            if m is not None:
                break
            values.setdefault("auto_renew", False)
            created = await _insert_membership(session, who.id, group_id, values)
            if created is not None:
                break
            # Another transaction created this membership since our read (PostgreSQL: two
            # orders of one buyer paid at once). Its insert is committed now: extend that row.
            m = await _lock_membership(session, who.id, group_id)
        if m is None:
            mid = created
        else:
            mid = m.id
            await sql.run(f"UPDATE membership SET {', '.join(f'{k} = ?' for k in values)} "
                          "WHERE id = ?", (*(sql.ts(v) if isinstance(v, datetime) else v
                                             for v in values.values()), mid))
        result.append(mid)
        audits.append((actor, "membership.grant", f"membership:{mid}", at,
                       f"{reason}; user {who.id} group {group_id} until "
                       f"{expires.isoformat() if expires else 'lifetime'}"[:1000]))
        if was_active:
            payload: dict[str, object] = {
                "user_id": who.platform_user_id, "key": "access_extended",
                "params": {"group": title, "until": expires.isoformat() if expires else None},
                "language": who.language}
            outbox.append(("notify", who.platform, sql.json(payload), at, at))
        else:
            # The chat id lets the outbox check the chat's rate budget before any work.
            outbox.append(("deliver_invite", who.platform,
                           sql.json({"membership_id": mid, "chat_id": chat_id, "paid": paid}),
                           at, at))
    await sql.many(AUDIT_INSERT, audits)
    await sql.many(_OUTBOX_INSERT, outbox)
    return result


async def _insert_membership(session: AsyncSession, user_id: int, group_id: int,
                             values: dict[str, object]) -> int | None:
    """INSERT ... ON CONFLICT (user, group) DO NOTHING: the new id, or None when the row
    exists (on PostgreSQL the insert waits for a concurrent creator to commit first)."""
    return await insert_ignore(session, Membership,
                               {"user_id": user_id, "chat_group_id": group_id, **values},
                               conflict=["user_id", "chat_group_id"])


async def _lock_membership(session: AsyncSession, user_id: int, group_id: int) -> _Held:
    row = (await session.execute(
        select(Membership.id, Membership.status, Membership.starts_at, Membership.expires_at)
        .where(Membership.user_id == user_id, Membership.chat_group_id == group_id)
        .with_for_update())).one()
    return _Held(row[0], row[1], row[2], row[3])


async def grant_days(
    session: AsyncSession, user: User, group: ChatGroup, duration_days: int | None,
    now: datetime, *, actor: str, reason: str, plan_id: int | None = None,
    subscription_id: str | None = None,
) -> Membership:
    """Grant or extend one user's access to one group, and queue the invite or the notice."""
    assert user.id is not None and group.id is not None
    (mid,) = await _grant_groups(
        session, Grantee(user.id, user.platform, user.platform_user_id, user.language),
        [(group.id, group.title, group.chat_id)], duration_days, now, actor=actor, reason=reason,
        plan_id=plan_id, subscription_id=subscription_id, paid=False)
    m = await session.get(Membership, mid, populate_existing=True)
    assert m is not None
    return m


async def grant_plan(
    session: AsyncSession, user_id: int, plan_id: int, now: datetime, *, actor: str,
    reason: str, subscription_id: str | None = None,
) -> list[int]:
    """Every group of the plan (a bundle grants several) for the plan's duration; returns
    the membership ids. One query finds the plan, the buyer and the groups."""
    sql = await Sql.of(session)
    rows = await sql.all(
        'SELECT p.duration_days, u.platform, u.platform_user_id, u.language, g.id, g.title, '
        'g.chat_id '
        'FROM plan p JOIN plan_group pg ON pg.plan_id = p.id '
        'JOIN chat_group g ON g.id = pg.chat_group_id JOIN "user" u ON u.id = ? '
        'WHERE p.id = ? ORDER BY g.id', (user_id, plan_id))
    if not rows:
        return []
    duration_days, platform, platform_user_id, language = rows[0][:4]
    who = Grantee(user_id, platform, platform_user_id, language)
    return await _grant_groups(session, who, [(r[4], r[5], r[6]) for r in rows],
                               duration_days, now, actor=actor, reason=reason,
                               plan_id=plan_id, subscription_id=subscription_id, paid=True)


async def extend_to(
    session: AsyncSession, user: User, group: ChatGroup, until: datetime | None,
    duration_days: int | None, now: datetime, *, actor: str, reason: str,
    subscription_id: str | None = None, notify: bool = True,
) -> tuple[Membership | None, bool]:
    """A renewal: access to `group` runs at least to `until` (a paid period's end), or, with
    no `until`, `duration_days` more. Returns (membership, changed).

    With `until` the result is max(current end, until): never shortened, the same whatever
    order renewals arrive in and however often. Only an existing membership is touched and
    never a revoked one (a refund, dispute or the owner ended it): a renewal continues access,
    it does not create it. A lapsed one comes back with a fresh invite.
    """
    m = (await session.execute(
        select(Membership).where(Membership.user_id == user.id,
                                 Membership.chat_group_id == group.id).with_for_update()
    )).scalar_one_or_none()
    if m is None or m.status == "revoked":
        return m, False
    lapsed = m.status == "expired"
    if not lapsed and m.expires_at is None:
        return m, False  # lifetime already
    if until is None:
        if duration_days is None:
            return m, False
        until = extend(None if lapsed else m, duration_days, now)[1]
        assert until is not None
    base = now if lapsed else m.expires_at
    assert base is not None
    if until <= base:
        return m, False
    if lapsed:
        m.status, m.starts_at = "active", now
    m.expires_at, m.updated_at, m.reminded_at = until, now, None  # a new period: remind again
    if subscription_id and m.provider_subscription_id != subscription_id:
        m.provider_subscription_id, m.auto_renew = subscription_id, True
    await session.flush()
    audit(session, actor, "membership.extend", f"membership:{m.id}", now,
          f"{reason}; user {user.id} group {group.id} until {until.isoformat()}")
    if lapsed:
        enqueue(session, "deliver_invite", user.platform, {"membership_id": m.id}, now)
    elif notify:
        enqueue(session, "notify", user.platform, {
            "user_id": user.platform_user_id, "key": "access_extended",
            "params": {"group": group.title, "until": until.isoformat()},
            "language": user.language,
        }, now)
    return m, True
