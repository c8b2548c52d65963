"""What differs between SQLite and PostgreSQL, in one place; the rest of the code writes
SQLAlchemy Core or ORM statements over the tables of storage/models.py and never asks which
database it is on.

- INSERT ... ON CONFLICT DO NOTHING exists in both, but SQLAlchemy spells it with each
  dialect's own `insert`: `insert_ignore` builds it once per dialect and reuses it.
- Row locks need nothing here: `select(...).with_for_update(skip_locked=...)` renders
  FOR UPDATE [SKIP LOCKED] on PostgreSQL and nothing on SQLite, whose single writer (a
  BEGIN IMMEDIATE transaction, storage/sqlite_thread.py) serialises transactions anyway.
- Date arithmetic between columns: `minus_days`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import DateTime, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

S = TypeVar("S")


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


class PerDialect(Generic[S]):
    """A statement built once per dialect, on first use, and reused: constructing a
    statement (and its cache key) costs more than SQLite takes to run it."""

    def __init__(self, build: Callable[[str], S]) -> None:
        self._build = build
        self._built: dict[str, S] = {}

    def get(self, dialect: str) -> S:
        stmt = self._built.get(dialect)
        if stmt is None:
            stmt = self._built[dialect] = self._build(dialect)
        return stmt

    def __call__(self, session: AsyncSession) -> S:
        return self.get(dialect_name(session))


def insert_ignore(
    table: Table, conflict: Sequence[str], returning: Sequence[str] = ("id",)
) -> PerDialect[Any]:
    """INSERT INTO table ... ON CONFLICT (conflict) DO NOTHING [RETURNING ...], values given
    at execution. The unique index decides the conflict, so concurrent duplicates resolve
    in the database without a race; RETURNING gives no row when the row existed."""

    def build(dialect: str) -> Any:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt: Any = insert(table).on_conflict_do_nothing(index_elements=list(conflict))
        if returning:
            stmt = stmt.returning(*(table.c[name] for name in returning))
        return stmt

    return PerDialect(build)


class minus_days(FunctionElement[Any]):  # noqa: N801 - reads like the SQL function it is
    """`column - N days`, for comparing one datetime column with another shifted one."""

    type = DateTime(timezone=True)
    # `days` is rendered into the SQL text, and is not part of a cache key: no caching.
    inherit_cache = False

    def __init__(self, column: Any, days: int) -> None:
        self.days = int(days)
        super().__init__(column)


@compiles(minus_days, "postgresql")
def _minus_days_pg(element: minus_days, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    return f"({compiler.process(column, **kw)} - make_interval(0, 0, 0, {element.days}))"


@compiles(minus_days, "sqlite")
def _minus_days_sqlite(element: minus_days, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'; strftime gives the same
    # layout (to the millisecond), so the text comparison orders like the times do.
    (column,) = element.clauses
    return (
        f"strftime('%Y-%m-%d %H:%M:%f', {compiler.process(column, **kw)}, '-{element.days} days')"
    )
