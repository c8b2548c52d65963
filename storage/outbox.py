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

from storage.db import Database
from storage.sql import Sql


@dataclass
class ClaimedRow:
    """An outbox row as claimed: what its delivery needs, and the attempt count that makes
    the claim ours (settle compares it)."""

    id: int
    kind: str
    platform: str
    payload: dict[str, Any]
    attempts: int


async def claim_due(db: Database, now: datetime, limit: int, lease: timedelta
                    ) -> list[ClaimedRow]:
    """Lease up to `limit` due rows, oldest first. Plain SQL (storage/sql.py): the worker
    claims every tick, and under a burst of payments this must stay cheap."""
    async with db.transaction() as s:
        sql = await Sql.of(s)
        rows = await sql.all(
            "SELECT id, kind, platform, payload, attempts FROM outbox WHERE status = 'pending' "
            f"AND next_attempt_at <= ? ORDER BY id LIMIT ?{sql.skip_locked}",
            (sql.ts(now), limit))
        if not rows:
            return []
        ids = [r[0] for r in rows]
        await sql.run(f"UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? "
                      f"WHERE id IN ({sql.marks(len(ids))})", (sql.ts(now + lease), *ids))
    return [ClaimedRow(r[0], r[1], r[2], sql.load_json(r[3]), r[4] + 1) for r in rows]


async def settle(db: Database, row_id: int, *, status: str = "done",
                 retry_at: datetime | None = None, error: str | None = None,
                 claimed_attempts: int | None = None, not_an_attempt: bool = False) -> bool:
    """Record the outcome of a claimed row; returns False if the claim was no longer ours.

    `not_an_attempt` gives the attempt back: being rate limited (a 429, or our own budget
    putting the row back) is not a failure of the row, and must not push its backoff.
    """
    sets = ["status = ?", "last_error = ?"]
    async with db.transaction() as s:
        sql = await Sql.of(s)
        params: list[object] = [status, error and error[:1000]]
        if retry_at is not None:
            sets.append("next_attempt_at = ?")
            params.append(sql.ts(retry_at))
        if not_an_attempt:
            sets.append("attempts = attempts - 1")
        where = "id = ?"
        params.append(row_id)
        if claimed_attempts is not None:
            where += " AND attempts = ?"
            params.append(claimed_attempts)
        done = await sql.run(f"UPDATE outbox SET {', '.join(sets)} WHERE {where}", params)
    return done == 1
