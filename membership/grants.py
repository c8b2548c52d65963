"""Granting and extending access after a payment (or an owner's /grant)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditLog, ChatGroup, Membership, Outbox, Plan, PlanGroup, User
from storage.queries import audit, enqueue


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


async def _grant_groups(
    session: AsyncSession, who: Grantee, groups: list[tuple[int, str]],
    duration_days: int | None, now: datetime, *, actor: str, reason: str,
    plan_id: int | None, subscription_id: str | None,
) -> list[int]:
    """Grant or extend `who`'s access to each (group id, title); queue the invite or the
    notice. Core statements only: one locked read of the existing memberships, one write
    per group, one insert each for the audit rows and the outbox rows. Returns the
    membership ids, in the order of `groups`."""
    ids = [g for g, _ in groups]
    existing = {m.chat_group_id: m for m in (await session.execute(
        select(Membership.id, Membership.chat_group_id, Membership.status,
               Membership.starts_at, Membership.expires_at, Membership.plan_id)
        .where(Membership.user_id == who.id,
               Membership.chat_group_id.in_(ids))  # type: ignore[attr-defined]
        .with_for_update()
    )).all()}
    audits: list[dict[str, object]] = []
    outbox: list[dict[str, object]] = []
    result: list[int] = []
    for group_id, title in groups:
        m = existing.get(group_id)
        was_active = m is not None and is_active(m, now)  # type: ignore[arg-type]
        starts, expires = extend(m, duration_days, now)  # type: ignore[arg-type]
        values: dict[str, object] = {"status": "active", "starts_at": starts,
                                     "expires_at": expires, "updated_at": now}
        if plan_id:
            values["plan_id"] = plan_id
        if not was_active:
            values["reminded_at"] = None
        if subscription_id:
            values.update(provider_subscription_id=subscription_id, auto_renew=True)
        if m is None:
            mid = (await session.execute(
                insert(Membership).values(user_id=who.id, chat_group_id=group_id, **values)
                .returning(Membership.id))).scalar_one()
        else:
            mid = m.id
            await session.execute(update(Membership).where(Membership.id == mid)
                                  .values(**values)
                                  .execution_options(synchronize_session=False))
        result.append(mid)
        audits.append({"actor": actor, "action": "membership.grant",
                       "target": f"membership:{mid}", "at": now,
                       "detail": f"{reason}; user {who.id} group {group_id} until "
                                 f"{expires.isoformat() if expires else 'lifetime'}"[:1000]})
        if was_active:
            outbox.append(_outbox_row("notify", who.platform, {
                "user_id": who.platform_user_id, "key": "access_extended",
                "params": {"group": title, "until": expires.isoformat() if expires else None},
            }, now))
        else:
            outbox.append(_outbox_row("deliver_invite", who.platform, {"membership_id": mid},
                                      now))
    if audits:
        await session.execute(insert(AuditLog), audits)
        await session.execute(insert(Outbox), outbox)
    return result


def _outbox_row(kind: str, platform: str, payload: dict[str, object],
                now: datetime) -> dict[str, object]:
    return {"kind": kind, "platform": platform, "payload": payload, "status": "pending",
            "attempts": 0, "next_attempt_at": now, "created_at": now}


async def grant_days(
    session: AsyncSession, user: User, group: ChatGroup, duration_days: int | None,
    now: datetime, *, actor: str, reason: str, plan_id: int | None = None,
    subscription_id: str | None = None,
) -> Membership:
    """Grant or extend one user's access to one group, and queue the invite or the notice."""
    assert user.id is not None and group.id is not None
    (mid,) = await _grant_groups(
        session, Grantee(user.id, user.platform, user.platform_user_id, user.language),
        [(group.id, group.title)], duration_days, now, actor=actor, reason=reason,
        plan_id=plan_id, subscription_id=subscription_id)
    m = await session.get(Membership, mid, populate_existing=True)
    assert m is not None
    return m


async def grant_plan(
    session: AsyncSession, user_id: int, plan_id: int, now: datetime, *, actor: str,
    reason: str, subscription_id: str | None = None,
) -> list[int]:
    """Every group of the plan (a bundle grants several) for the plan's duration; returns
    the membership ids. One query finds the plan, the buyer and the groups."""
    rows = (await session.execute(
        select(Plan.duration_days, User.platform, User.platform_user_id, User.language,
               ChatGroup.id, ChatGroup.title).select_from(Plan)
        .join(PlanGroup, PlanGroup.plan_id == Plan.id)
        .join(ChatGroup, ChatGroup.id == PlanGroup.chat_group_id)
        .join(User, User.id == user_id)
        .where(Plan.id == plan_id).order_by(ChatGroup.id)
    )).all()
    if not rows:
        return []
    first = rows[0]
    who = Grantee(user_id, first.platform, first.platform_user_id, first.language)
    return await _grant_groups(session, who, [(r.id, r.title) for r in rows],
                               first.duration_days, now, actor=actor, reason=reason,
                               plan_id=plan_id, subscription_id=subscription_id)


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
