"""Shared fixtures. Every database test runs on SQLite, and also on PostgreSQL when
GATEPASS_TEST_DATABASE_URL is set (each case in a schema of its own)."""

from __future__ import annotations

import os
import secrets
import socket
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from storage.db import Database
from storage.migrate import upgrade
from tests import wallet_shim

# billing/wallet.py is written in parallel (issue 11, helper "wl"): until it merges, the
# top-up code runs on a private stand-in with the same signatures (tests/wallet_shim.py).
wallet_shim.install()

PG_URL = os.environ.get("GATEPASS_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("GATEPASS_TEST_REDIS_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


class PgSchema:
    """A throwaway schema on the test PostgreSQL database."""

    def __init__(self, url: str) -> None:
        self.url, self.name = url, f"t_{secrets.token_hex(6)}"

    async def _exec(self, sql: str) -> None:
        engine = create_async_engine(self.url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    async def create(self) -> None:
        await self._exec(f'CREATE SCHEMA "{self.name}"')

    async def drop(self) -> None:
        """Drop the schema. A connection left inside a transaction (a leak) would make DROP
        wait forever: after a while the holders are ended and reported as a warning with
        their queries, rather than hanging the run."""
        engine = create_async_engine(self.url)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SET lock_timeout = '15s'"))
                try:
                    await conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
                    await conn.commit()
                    return
                except DBAPIError:
                    await conn.rollback()
                holders = (
                    await conn.execute(
                        text(
                            "SELECT a.pid, a.state, a.application_name, "
                            "left(a.query, 200) AS query "
                            "FROM pg_stat_activity a WHERE a.pid <> pg_backend_pid() AND a.pid IN ("
                            " SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s)"
                        ),
                        {"s": self.name},
                    )
                ).all()
                for h in holders:
                    await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": h.pid})
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
                await conn.commit()
        finally:
            await engine.dispose()
        warnings.warn(
            f"schema {self.name} was still locked after the case by: "
            + "; ".join(
                f"pid {h.pid} {h.state} {h.application_name!r}: {h.query}" for h in holders
            ),
            stacklevel=1,
        )


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[tuple[str, str | None]]:
    """(url, search_path) of an empty database; migrations not yet run."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/gatepass.db", None
        return
    assert PG_URL
    schema = PgSchema(PG_URL)
    await schema.create()
    try:
        yield PG_URL, schema.name
    finally:
        await schema.drop()


@pytest.fixture
async def db(db_url: tuple[str, str | None]) -> AsyncIterator[Database]:
    database = Database(*db_url)
    await upgrade(database)
    try:
        yield database
    finally:
        await database.dispose()
