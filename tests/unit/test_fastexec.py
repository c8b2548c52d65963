"""storage/fastexec.py: a unit of work's pre-built Core statements run straight on the SQLite
connection, with the same results, defaults, errors and rollback as SQLAlchemy's own path."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from storage.db import Database
from storage.dialects import insert_ignore
from storage.models import AuditLog, Outbox, User, table

_O = table(Outbox)
_ENQUEUE = insert(_O)  # leaves status/attempts out: their column defaults fill them
_PENDING = (
    select(_O.c.id, _O.c.payload, _O.c.next_attempt_at, _O.c.status, _O.c.attempts)
    .where(_O.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_O.c.id)
)
_BUMP = update(_O).where(_O.c.id == bindparam("row_id")).values(attempts=_O.c.attempts + 1)
_USER = insert_ignore(table(User), ("platform", "platform_user_id"))


async def _round(db: Database, now, tag: str) -> list:
    async def work(s):
        await s.execute(
            _ENQUEUE,
            [
                {
                    "kind": "notify",
                    "platform": "telegram",
                    "payload": {"tag": tag, "n": i},
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for i in range(3)
            ],
        )
        ids = (await s.execute(select(_O.c.id).where(_O.c.payload.is_not(None)))).scalars().all()
        assert (await s.execute(_BUMP, {"row_id": ids[-1]})).rowcount == 1
        return (await s.execute(_PENDING, {"ids": ids})).all()

    return await db.unit(work)


async def test_prebuilt_statements_run_on_the_fast_path_with_sqlalchemy_results(db: Database, now):
    first = await _round(db, now, "a")  # seen once: SQLAlchemy's own path
    second = await _round(db, now, "b")  # seen again: compiled once, run by the executor
    assert [r.payload for r in second[3:]] == [{"tag": "b", "n": i} for i in range(3)]
    for rows in (first, second):
        assert [r.status for r in rows] == ["pending"] * len(rows)  # the column default
        assert rows[-1].attempts == 1 and rows[0].attempts == 0
        assert all(r.next_attempt_at == now and r.next_attempt_at.tzinfo for r in rows)
    # Both databases: the executemany INSERT too (PostgreSQL compiles a single-row INSERT
    # with an implicit RETURNING, which a list of rows must not get).
    ex = db._group._executor if db.is_sqlite else db._pg_group._executor
    assert ex is not None
    taken = {p.stmt for p in ex._prepared.values() if p is not None}
    assert {_ENQUEUE, _PENDING, _BUMP} <= taken
    assert any(
        p.stmt is _ENQUEUE and p.row is None for p in ex._prepared.values() if p is not None
    )  # run as an executemany, no rows to read back


async def test_a_failing_unit_rolls_back_its_fast_statements_and_errors_keep_their_class(
    db: Database, now
):
    row = {
        "platform": "telegram",
        "platform_user_id": "77",
        "refund_policy": "revoke",
        "created_at": now,
    }

    async def add_twice(s):
        for _ in range(2):  # the second run of the pre-built statement is the fast one
            await s.execute(
                insert(table(AuditLog)).values(actor="t", action="a", target="x", at=now)
            )
            new = (await s.execute(_USER(s), row)).first()
        assert new is None  # the conflict was ignored, as on the ordinary path
        raise RuntimeError("roll me back")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            await db.unit(add_twice)
    async with db.session() as s:
        assert (await s.execute(select(col(User.id)))).first() is None
        assert (await s.execute(select(col(AuditLog.id)))).first() is None

    plain = insert(table(User))

    async def duplicate(s):
        for _ in range(2):
            await s.execute(plain, {**row, "platform_user_id": "88"})

    for _ in range(2):
        with pytest.raises(IntegrityError):
            await db.unit(duplicate)
    await db.unit(lambda s: s.execute(plain, {**row, "platform_user_id": "99"}))
    async with db.session() as s:
        assert (await s.execute(select(col(User.platform_user_id)))).scalars().all() == ["99"]
