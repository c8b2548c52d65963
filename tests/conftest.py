"""Shared fixtures. Every database test runs on SQLite, and also on PostgreSQL when
GATEPASS_TEST_DATABASE_URL is set (each case in a schema of its own)."""
from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from storage.db import Database
from storage.migrate import upgrade

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
        await self._exec(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')


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
