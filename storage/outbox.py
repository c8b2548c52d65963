"""Claiming and settling outbox rows. Safe with several workers on one PostgreSQL:
rows are claimed with FOR UPDATE SKIP LOCKED and leased, so a crashed worker's rows come back.

A claim counts an attempt and moves next_attempt_at to the end of the lease; the row stays
`pending` throughout, so a worker that dies mid-delivery leaves it to be claimed again once
the lease runs out. Settling compares the attempt count with the claim's, so a worker whose
lease ran out (and whose row another worker claimed since) cannot overwrite the newer outcome.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update

from storage.db import Database
from storage.models import Outbox


async def claim_due(db: Database, now: datetime, limit: int, lease: timedelta) -> list[Outbox]:
    async with db.transaction() as s:
        rows = list((await s.execute(
            select(Outbox)
            .where(Outbox.status == "pending", Outbox.next_attempt_at <= now)
            .order_by(Outbox.id).limit(limit)
            .with_for_update(skip_locked=True)
        )).scalars().all())
        for r in rows:
            r.attempts += 1
            r.next_attempt_at = now + lease
    return rows


async def settle(db: Database, row_id: int, *, status: str = "done",
                 retry_at: datetime | None = None, error: str | None = None,
                 claimed_attempts: int | None = None, not_an_attempt: bool = False) -> bool:
    """Record the outcome of a claimed row; returns False if the claim was no longer ours.

    `not_an_attempt` gives the attempt back: being rate limited (a 429, or our own budget
    putting the row back) is not a failure of the row, and must not push its backoff.
    """
    values: dict[str, object] = {"status": status, "last_error": error and error[:1000]}
    if retry_at is not None:
        values["next_attempt_at"] = retry_at
    if not_an_attempt:
        values["attempts"] = Outbox.attempts - 1
    where = [Outbox.id == row_id]
    if claimed_attempts is not None:
        where.append(Outbox.attempts == claimed_attempts)
    async with db.transaction() as s:
        done = await s.execute(update(Outbox).where(*where).values(**values))
    return done.rowcount == 1  # type: ignore[attr-defined]
