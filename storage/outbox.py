"""Claiming and settling outbox rows. Safe with several workers on one PostgreSQL:
rows are claimed with FOR UPDATE SKIP LOCKED and leased, so a crashed worker's rows come back.

A claim counts an attempt and moves next_attempt_at to the end of the lease; the row stays
`pending` throughout, so a worker that dies mid-delivery leaves it to be claimed again once
the lease runs out. Settling compares the attempt count with the claim's, so a worker whose
lease ran out (and whose row another worker claimed since) cannot overwrite the newer outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database
from storage.models import Outbox, table


@dataclass
class ClaimedRow:
    """An outbox row as claimed: what its delivery needs, and the attempt count that makes
    the claim ours (settle compares it)."""

    id: int
    kind: str
    platform: str
    payload: dict[str, Any]
    attempts: int


_T = table(Outbox)


def _due(*where: Any) -> Any:
    return (
        select(_T.c.id, _T.c.kind, _T.c.platform, _T.c.payload, _T.c.attempts)
        .where(_T.c.status == "pending", _T.c.next_attempt_at <= bindparam("now"), *where)
        .order_by(_T.c.id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )


# Each process claims only the rows it can deliver: the WeChat worker (`gatepass wechat`)
# the `wechat` rows, `gatepass run` everything else (Telegram, provider calls).
_DUE = _due()
_DUE_ONLY = _due(_T.c.platform == bindparam("platform"))
_DUE_SKIP = _due(_T.c.platform != bindparam("platform"))
_LEASE = (
    update(_T)
    .where(_T.c.id.in_(bindparam("ids", expanding=True)))
    .values(attempts=_T.c.attempts + 1, next_attempt_at=bindparam("until"))
)


async def claim_due(
    db: Database,
    now: datetime,
    limit: int,
    lease: timedelta,
    *,
    only: str | None = None,
    skip: str | None = None,
) -> list[ClaimedRow]:
    """Lease up to `limit` due rows, oldest first: only those of platform `only`, or all but
    those of platform `skip`. Core statements built once, and one unit of work
    (Database.unit): the worker claims every tick, and under a burst of payments this must
    stay cheap."""
    assert only is None or skip is None
    stmt, params = _DUE, {"now": now, "limit": limit}
    if only is not None:
        stmt, params["platform"] = _DUE_ONLY, only
    elif skip is not None:
        stmt, params["platform"] = _DUE_SKIP, skip

    async def claim(s: AsyncSession) -> list[ClaimedRow]:
        rows = (await s.execute(stmt, params)).all()
        if not rows:
            return []
        await s.execute(_LEASE, {"ids": [r[0] for r in rows], "until": now + lease})
        return [ClaimedRow(r[0], r[1], r[2], r[3], r[4] + 1) for r in rows]

    return await db.unit(claim)


_SETTLE: dict[tuple[bool, bool, bool], Any] = {}


def _settle_stmt(retry: bool, give_back: bool, compare: bool) -> Any:
    """The settling UPDATE for one combination of options, built once (every delivery
    settles a row: this is as hot as the claim)."""
    key = (retry, give_back, compare)
    stmt = _SETTLE.get(key)
    if stmt is None:
        values: dict[str, Any] = {
            "status": bindparam("to_status"),
            "last_error": bindparam("error"),
        }
        if retry:
            values["next_attempt_at"] = bindparam("retry_at")
        if give_back:
            values["attempts"] = _T.c.attempts - 1
        stmt = update(_T).where(_T.c.id == bindparam("row_id")).values(values)
        if compare:
            stmt = stmt.where(_T.c.attempts == bindparam("claimed"))
        _SETTLE[key] = stmt
    return stmt


async def settle(
    db: Database,
    row_id: int,
    *,
    status: str = "done",
    retry_at: datetime | None = None,
    error: str | None = None,
    claimed_attempts: int | None = None,
    not_an_attempt: bool = False,
) -> bool:
    """Record the outcome of a claimed row; returns False if the claim was no longer ours.

    `not_an_attempt` gives the attempt back: being rate limited (a 429, or our own budget
    putting the row back) is not a failure of the row, and must not push its backoff.
    """
    values: dict[str, Any] = {
        "row_id": row_id,
        "to_status": status,
        "error": error and error[:1000],
    }
    if retry_at is not None:
        values["retry_at"] = retry_at
    if claimed_attempts is not None:
        values["claimed"] = claimed_attempts
    stmt = _settle_stmt(retry_at is not None, not_an_attempt, claimed_attempts is not None)

    async def run(s: AsyncSession) -> bool:
        return (await s.execute(stmt, values)).rowcount == 1  # type: ignore[attr-defined]

    return await db.unit(run)


async def settle_done_in(s: AsyncSession, row_id: int, claimed_attempts: int) -> bool:
    """Mark a claimed row done inside the caller's own unit of work, so that the row's
    effects (what its handler stored and queued) and its settling commit together, with one
    transaction less per row; False if the claim was no longer ours."""
    return await settle_in(s, row_id, claimed_attempts)


async def settle_in(
    s: AsyncSession,
    row_id: int,
    claimed_attempts: int,
    *,
    status: str = "done",
    error: str | None = None,
) -> bool:
    """settle_done_in for any final outcome: `failed` with its reason for a refusal the
    handler recorded itself (a broadcast message to a user who blocked the bot)."""
    result = await s.execute(
        _settle_stmt(False, False, True),
        {
            "row_id": row_id,
            "to_status": status,
            "error": error and error[:1000],
            "claimed": claimed_attempts,
        },
    )
    return result.rowcount == 1  # type: ignore[attr-defined]
