"""Granting and extending access after a payment (or an owner's /grant)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.dialects import insert_ignore
from storage.models import (
    AccountLink,
    AuditLog,
    ChatGroup,
    Membership,
    Outbox,
    Plan,
    PlanGroup,
    User,
    table,
)
from storage.queries import audit, enqueue


def is_active(m: Any, now: datetime) -> bool:
    """Active and not past its end; `m` is a Membership or a row with status/expires_at."""
    return m.status == "active" and (m.expires_at is None or m.expires_at > now)


def extend(
    m: Any | None, duration_days: int | None, now: datetime
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
    return list(
        (
            await session.execute(
                select(ChatGroup)
                .join(PlanGroup, col(PlanGroup.chat_group_id) == col(ChatGroup.id))
                .where(col(PlanGroup.plan_id) == plan_id)
                .order_by(col(ChatGroup.id))
            )
        )
        .scalars()
        .all()
    )


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


_M, _G, _PG, _P, _U, _L = (
    table(Membership),
    table(ChatGroup),
    table(PlanGroup),
    table(Plan),
    table(User),
    table(AccountLink),
)
_HELD = (
    select(_M.c.chat_group_id, _M.c.id, _M.c.status, _M.c.starts_at, _M.c.expires_at)
    .where(
        _M.c.user_id == bindparam("user_id"),
        _M.c.chat_group_id.in_(bindparam("groups", expanding=True)),
    )
    .with_for_update()
)
_MEMBERSHIP_INSERT = insert_ignore(_M, ("user_id", "chat_group_id"))
_OUTBOX_INSERT = insert(table(Outbox))
_AUDIT_INSERT = insert(table(AuditLog))
_PLAN_GRANT = (
    select(
        _P.c.duration_days,
        _U.c.platform,
        _U.c.platform_user_id,
        _U.c.language,
        _G.c.id,
        _G.c.title,
        _G.c.chat_id,
        _G.c.platform,
    )
    .select_from(
        _P.join(_PG, _PG.c.plan_id == _P.c.id)
        .join(_G, _G.c.id == _PG.c.chat_group_id)
        .join(_U, _U.c.id == bindparam("user_id"))
    )
    .where(_P.c.id == bindparam("plan_id"))
    .order_by(_G.c.id)
)
# The buyer's linked account on the other platform (asked only for a bundle across platforms).
_LINKED = select(_U.c.id, _U.c.platform, _U.c.platform_user_id, _U.c.language).select_from(
    _L.join(
        _U,
        ((_L.c.telegram_user_id == bindparam("user_id")) & (_U.c.id == _L.c.wechat_user_id))
        | ((_L.c.wechat_user_id == bindparam("user_id")) & (_U.c.id == _L.c.telegram_user_id)),
    )
)
# The buyer's user row, locked (FOR NO KEY UPDATE: inserts that reference the user still go
# on) by everything that resolves "the account on the group's platform": see hold_links.
_HOLD = (
    select(_U.c.id)
    .where(_U.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_U.c.id)
    .with_for_update(key_share=True)
)
# The membership update of a grant, built once per set of columns it sets.
_MEMBERSHIP_UPDATES: dict[tuple[str, ...], Any] = {}


def _membership_update(columns: tuple[str, ...]) -> Any:
    stmt = _MEMBERSHIP_UPDATES.get(columns)
    if stmt is None:
        stmt = _MEMBERSHIP_UPDATES[columns] = (
            update(_M)
            .where(_M.c.id == bindparam("mid"))
            .values({c: bindparam(f"v_{c}") for c in columns})
        )
    return stmt


async def hold_links(session: AsyncSession, *user_ids: int) -> None:
    """Lock these users' rows (in id order) until commit. A bind (links.bind_link) holds both
    accounts while it writes the link and moves their parked access; a grant, renewal, refund
    or dispute of a bundle holds the buyer before it asks which account holds each group.
    Without it, on PostgreSQL, a payment that read "no link" parks access the committing bind
    never sees (parked for good on a linked buyer), and a refund that read "no link" looks
    for the parked row the bind just moved and ends only one side of the bundle."""
    await session.execute(_HOLD, {"ids": sorted(set(user_ids))})


async def _grant_groups(
    session: AsyncSession,
    who: Grantee,
    groups: list[tuple[int, str, str, str]],
    duration_days: int | None,
    now: datetime,
    *,
    actor: str,
    reason: str,
    plan_id: int | None,
    subscription_id: str | None,
    paid: bool,
    audit_first: dict[str, object] | None = None,
) -> list[int]:
    """Grant or extend `who`'s access to each (group id, title, chat id, platform); queue
    the invite (`paid`: its message thanks for the payment; else it says access was given)
    or the notice. A group on another platform than `who`'s is "parked" access (no linked
    account there yet): its delivery asks the buyer to /link instead of inviting. Core
    statements built once (this is on every payment webhook): one locked read of the
    existing memberships, one write per group, one insert each for the audit rows and the
    outbox rows (`audit_first`, the caller's own audit row, goes first in that insert).
    Returns the membership ids, in the order of `groups`."""
    ids = [g[0] for g in groups]
    existing = {
        r[0]: _Held(*r[1:])
        for r in await session.execute(_HELD, {"user_id": who.id, "groups": ids})
    }
    audits: list[dict[str, object]] = [audit_first] if audit_first else []
    outbox: list[dict[str, object]] = []
    result: list[int] = []
    for group_id, title, chat_id, group_platform in groups:
        m = existing.get(group_id)
        while True:
            was_active = m is not None and is_active(m, now)
            starts, expires = extend(m, duration_days, now)
            values: dict[str, object] = {
                "status": "active",
                "starts_at": starts,
                "expires_at": expires,
                "updated_at": now,
            }
            if plan_id:
                values["plan_id"] = plan_id
            if not was_active:
                values["reminded_at"] = None
            # Paid access of ours takes over from a Star subscription (its paid time is kept,
            # see extend): from now on our sweeps, not Telegram's, end it.
            values["star_link"] = None
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
            assert created is not None  # the loop ends with a row inserted or one to extend
            mid = created
        else:
            mid = m.id
            await session.execute(
                _membership_update(tuple(values)),
                {"mid": mid, **{f"v_{k}": v for k, v in values.items()}},
            )
        result.append(mid)
        audits.append(
            {
                "actor": actor,
                "action": "membership.grant",
                "target": f"membership:{mid}",
                "at": now,
                "detail": f"{reason}; user {who.id} group {group_id} until "
                f"{expires.isoformat() if expires else 'lifetime'}"[:1000],
            }
        )
        if was_active:
            payload: dict[str, object] = {
                "user_id": who.platform_user_id,
                "key": "access_extended",
                "params": {"group": title, "until": expires.isoformat() if expires else None},
                "language": who.language,
            }
            outbox.append(
                {
                    "kind": "notify",
                    "platform": who.platform,
                    "payload": payload,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
        else:
            # The chat id lets the outbox check the chat's rate budget before any work (a
            # parked delivery makes no chat call: no budget to check).
            deliver: dict[str, object] = {"membership_id": mid, "paid": paid}
            if group_platform == who.platform:
                deliver["chat_id"] = chat_id
            outbox.append(
                {
                    "kind": "deliver_invite",
                    "platform": who.platform,
                    "payload": deliver,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
    await session.execute(_AUDIT_INSERT, audits)
    await session.execute(_OUTBOX_INSERT, outbox)
    return result


async def _insert_membership(
    session: AsyncSession, user_id: int, group_id: int, values: dict[str, object]
) -> int | None:
    """INSERT ... ON CONFLICT (user, group) DO NOTHING: the new id, or None when the row
    exists (on PostgreSQL the insert waits for a concurrent creator to commit first)."""
    return (
        await session.execute(
            _MEMBERSHIP_INSERT(session), {"user_id": user_id, "chat_group_id": group_id, **values}
        )
    ).scalar_one_or_none()


async def _lock_membership(session: AsyncSession, user_id: int, group_id: int) -> _Held:
    row = (
        await session.execute(
            select(_M.c.id, _M.c.status, _M.c.starts_at, _M.c.expires_at)
            .where(_M.c.user_id == user_id, _M.c.chat_group_id == group_id)
            .with_for_update()
        )
    ).one()
    return _Held(row[0], row[1], row[2], row[3])


async def grant_days(
    session: AsyncSession,
    user: User,
    group: ChatGroup,
    duration_days: int | None,
    now: datetime,
    *,
    actor: str,
    reason: str,
    plan_id: int | None = None,
    subscription_id: str | None = None,
) -> Membership:
    """Grant or extend one user's access to one group, and queue the invite or the notice."""
    assert user.id is not None and group.id is not None
    (mid,) = await _grant_groups(
        session,
        Grantee(user.id, user.platform, user.platform_user_id, user.language),
        [(group.id, group.title, group.chat_id, group.platform)],
        duration_days,
        now,
        actor=actor,
        reason=reason,
        plan_id=plan_id,
        subscription_id=subscription_id,
        paid=False,
    )
    m = await session.get(Membership, mid, populate_existing=True)
    assert m is not None
    return m


async def grant_plan(
    session: AsyncSession,
    user_id: int,
    plan_id: int,
    now: datetime,
    *,
    actor: str,
    reason: str,
    subscription_id: str | None = None,
    audit_first: dict[str, object] | None = None,
) -> list[int]:
    """Every group of the plan (a bundle grants several) for the plan's duration; returns
    the membership ids. One query finds the plan, the buyer and the groups. `audit_first`
    (an audit_log row's values) is inserted with the grant's own audit rows, first: one
    round trip fewer for the paid webhook."""
    rows = (await session.execute(_PLAN_GRANT, {"user_id": user_id, "plan_id": plan_id})).all()
    if not rows:
        if audit_first:
            await session.execute(_AUDIT_INSERT, [audit_first])
        return []
    duration_days, platform, platform_user_id, language = rows[0][:4]
    buyer = Grantee(user_id, platform, platform_user_id, language)
    groups = [(r[4], r[5], r[6], r[7]) for r in rows]
    # A bundle across platforms: each group goes to the buyer's account on its platform (the
    # linked one), or stays parked on the buyer until they link. One query, only then.
    elsewhere = [g for g in groups if g[3] != platform]
    linked: Grantee | None = None
    if elsewhere:
        await hold_links(session, user_id)
        row = (await session.execute(_LINKED, {"user_id": user_id})).first()
        linked = None if row is None else Grantee(row[0], row[1], row[2], row[3])
    result: dict[int, int] = {}
    for who in (buyer, linked):
        if who is None:
            continue
        if who is linked:
            mine = [g for g in groups if g[3] == who.platform]
        else:  # its own platform's groups, and the parked ones
            mine = [g for g in groups if linked is None or g[3] != linked.platform]
        if not mine:
            continue
        ids = await _grant_groups(
            session,
            who,
            mine,
            duration_days,
            now,
            actor=actor,
            reason=reason,
            plan_id=plan_id,
            subscription_id=subscription_id,
            paid=True,
            audit_first=audit_first,
        )
        audit_first = None
        result.update((g[0], mid) for g, mid in zip(mine, ids, strict=True))
    return [result[g[0]] for g in groups]


async def extend_to(
    session: AsyncSession,
    user: User,
    group: ChatGroup,
    until: datetime | None,
    duration_days: int | None,
    now: datetime,
    *,
    actor: str,
    reason: str,
    subscription_id: str | None = None,
    notify: bool = True,
) -> tuple[Membership | None, bool]:
    """A renewal: access to `group` runs at least to `until` (a paid period's end), or, with
    no `until`, `duration_days` more. Returns (membership, changed).

    With `until` the result is max(current end, until): never shortened, the same whatever
    order renewals arrive in and however often. Only an existing membership is touched and
    never a revoked one (a refund, dispute or the owner ended it): a renewal continues access,
    it does not create it. A lapsed one comes back with a fresh invite.
    """
    m = (
        await session.execute(
            select(Membership)
            .where(col(Membership.user_id) == user.id, col(Membership.chat_group_id) == group.id)
            .with_for_update()
        )
    ).scalar_one_or_none()
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
        if subscription_id and not lapsed and m.provider_subscription_id is None:
            # An earlier period's payment that names the subscription behind this access
            # (a Stars subscription's first payment arriving after its renewal): recorded,
            # so /cancel and refunds can stop it; the end stays.
            m.provider_subscription_id, m.auto_renew, m.updated_at = subscription_id, True, now
            await session.flush()
        return m, False
    if lapsed:
        m.status, m.starts_at = "active", now
    m.expires_at, m.updated_at, m.reminded_at = until, now, None  # a new period: remind again
    if subscription_id and m.provider_subscription_id != subscription_id:
        m.provider_subscription_id, m.auto_renew = subscription_id, True
    await session.flush()
    audit(
        session,
        actor,
        "membership.extend",
        f"membership:{m.id}",
        now,
        f"{reason}; user {user.id} group {group.id} until {until.isoformat()}",
    )
    if lapsed:
        enqueue(session, "deliver_invite", user.platform, {"membership_id": m.id}, now)
    elif notify:
        enqueue(
            session,
            "notify",
            user.platform,
            {
                "user_id": user.platform_user_id,
                "key": "access_extended",
                "params": {"group": group.title, "until": until.isoformat()},
                "language": user.language,
            },
            now,
        )
    return m, True
