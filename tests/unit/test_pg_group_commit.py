"""storage/pg_group.py: on PostgreSQL, units of work waiting together share a transaction;
a failing unit sends its batch back to one transaction per unit, and nothing is applied
twice or lost."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, insert, select
from sqlmodel import col

from storage.db import Database
from storage.models import AuditLog, table


async def _audit(s, now, target: str) -> str:
    await s.execute(
        insert(table(AuditLog)), {"actor": "test", "action": "unit", "target": target, "at": now}
    )
    return target


async def _targets(db: Database) -> list[str]:
    async with db.session() as s:
        return sorted((await s.execute(select(col(AuditLog.target)))).scalars())


@pytest.fixture
def pg(db: Database) -> Database:
    if db.is_sqlite:
        pytest.skip("SQLite's group commit is tested in test_db_units.py")
    return db


async def test_units_waiting_together_share_transactions(pg: Database, now):
    results = await asyncio.gather(
        *(pg.unit(lambda s, i=i: _audit(s, now, f"ok:{i:02}")) for i in range(60))
    )
    assert results == [f"ok:{i:02}" for i in range(60)]
    assert await _targets(pg) == [f"ok:{i:02}" for i in range(60)]
    group = pg._pg_group
    assert group is not None
    assert group.units == 60 and group.batches < 30


async def test_a_failing_unit_reruns_its_batch_one_unit_per_transaction(pg: Database, now):
    runs: dict[str, int] = {}

    async def good(s, i: int) -> str:
        runs[f"ok:{i:02}"] = runs.get(f"ok:{i:02}", 0) + 1
        return await _audit(s, now, f"ok:{i:02}")

    async def bad(s) -> str:
        await _audit(s, now, "bad")
        raise ValueError("this event is broken")

    results = await asyncio.gather(
        *(pg.unit(lambda s, i=i: good(s, i)) for i in range(20)),
        pg.unit(bad),
        *(pg.unit(lambda s, i=i: good(s, i)) for i in range(20, 40)),
        return_exceptions=True,
    )
    assert isinstance(results[20], ValueError)
    assert [r for i, r in enumerate(results) if i != 20] == [f"ok:{i:02}" for i in range(40)]
    # The bad unit's batch was rolled back and run again unit by unit: each good unit's
    # row is there exactly once, the bad one's not at all.
    assert await _targets(pg) == [f"ok:{i:02}" for i in range(40)]
    assert any(n == 2 for n in runs.values())
    async with pg.session() as s:
        n = (await s.execute(select(func.count()).select_from(AuditLog))).scalar_one()
    assert n == 40
