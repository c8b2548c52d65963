"""storage/db.py: a PostgreSQL connection the server dropped while it sat idle in the pool is
replaced on checkout (the ping runs only after idleness, not on every checkout)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

import storage.db as storage_db
from storage.db import Database


async def test_a_connection_dropped_while_idle_is_replaced(db: Database, monkeypatch):
    if db.is_sqlite:
        pytest.skip("PostgreSQL's connection pool")
    monkeypatch.setattr(storage_db, "PING_AFTER_IDLE_SECONDS", 0.0)
    async with db.session() as s:
        pid = (await s.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    killer = storage_db.make_engine(db.url)
    try:
        async with killer.begin() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    finally:
        await killer.dispose()
    async with db.session() as s:  # the same pooled connection: pinged, found dead, replaced
        again = (await s.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    assert again != pid
