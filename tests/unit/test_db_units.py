"""storage/db.py: units of work (group commit on SQLite), durability settings, and the refusal
to wait for a second connection while holding one."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import func, insert, select, text
from sqlmodel import col

from storage.db import Database, NestedConnectionError
from storage.models import AuditLog, table


async def _audit(s, now, target: str) -> int:
    await s.execute(
        insert(table(AuditLog)), {"actor": "test", "action": "unit", "target": target, "at": now}
    )
    return threading.get_ident()


async def test_units_share_commits_and_a_failing_one_is_rolled_back_alone(db: Database, now):
    async def good(i: int):
        return await db.unit(lambda s: _audit(s, now, f"ok:{i}"))

    async def bad(s):
        await _audit(s, now, "bad")
        raise ValueError("this event is broken")

    results = await asyncio.gather(
        *(good(i) for i in range(30)),
        db.unit(bad),
        *(good(i) for i in range(30, 60)),
        return_exceptions=True,
    )
    assert isinstance(results[30], ValueError)
    assert all(isinstance(r, int) for i, r in enumerate(results) if i != 30)
    async with db.session() as s:
        targets = set((await s.execute(select(col(AuditLog.target)))).scalars())
    assert targets == {f"ok:{i}" for i in range(60)}
    if db.is_sqlite:
        group = db._group
        assert group is not None
        # Off the event loop's thread, and far fewer commits than units.
        assert all(r != threading.get_ident() for i, r in enumerate(results) if i != 30)
        assert group.units == 61 and group.batches <= 10


async def test_a_second_connection_while_holding_one_is_refused(db: Database, now):
    async with db.transaction() as s:
        await _audit(s, now, "held")
        with pytest.raises(NestedConnectionError):
            async with asyncio.timeout(5):  # (same task: wait_for would run it in another)
                await db.unit(lambda s2: _audit(s2, now, "nested"))
        with pytest.raises(NestedConnectionError):
            async with db.session():
                pass
    async with db.session() as s:
        await s.commit()  # nothing held after a commit: asking again is fine
        await db.unit(lambda s2: _audit(s2, now, "after"))
        n = (await s.execute(select(func.count()).select_from(AuditLog))).scalar_one()
    assert n == 2


async def test_sqlite_commits_are_durable(tmp_path):
    from storage.migrate import upgrade

    db = Database(f"sqlite+aiosqlite:///{tmp_path}/d.db")
    try:
        await upgrade(db)
        async with db.session() as s:
            assert (await s.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await s.execute(text("PRAGMA synchronous"))).scalar() == 2  # FULL
        await db.ping()
    finally:
        await db.dispose()
