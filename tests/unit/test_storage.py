from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError, StatementError

from storage.models import User


async def test_migration_creates_every_table(db):
    async with db.engine.connect() as conn:
        names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert {
        "user",
        "chat_group",
        "plan",
        "plan_price",
        "orders",
        "payment",
        "membership",
        "invite",
        "webhook_event",
        "outbox",
        "audit_log",
        "plan_group",
        "whitelist",
    } <= names


async def test_upgrade_twice_is_a_no_op(db):
    from storage.migrate import upgrade

    await upgrade(db)


async def test_datetimes_come_back_aware_utc(db, now):
    async with db.transaction() as s:
        s.add(User(platform="telegram", platform_user_id="1", created_at=now))
    async with db.session() as s:
        u = (await s.execute(text("SELECT 1"))).scalar()
        assert u == 1
        from sqlalchemy import select

        user = (await s.execute(select(User))).scalar_one()
    assert user.created_at == now and user.created_at.tzinfo is not None


async def test_naive_datetimes_are_refused(db):
    with pytest.raises(StatementError):
        async with db.transaction() as s:
            s.add(User(platform="telegram", platform_user_id="1", created_at=datetime(2026, 1, 1)))  # noqa: DTZ001


async def test_user_identity_is_unique(db, now):
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            s.add(User(platform="telegram", platform_user_id="1", created_at=now))
            s.add(User(platform="telegram", platform_user_id="1", created_at=now))


async def test_sqlite_pragmas(tmp_path):
    from storage.db import Database

    db = Database(f"sqlite+aiosqlite:///{tmp_path}/p.db")
    try:
        async with db.session() as s:
            assert (await s.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await s.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await s.execute(text("PRAGMA busy_timeout"))).scalar() == 5000
    finally:
        await db.dispose()


def test_datetime_type_roundtrip_utc():
    assert datetime(2026, 1, 1, tzinfo=UTC).tzinfo is UTC
