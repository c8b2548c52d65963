"""Core statements run straight on the SQLite connection inside a unit of work.

A unit of work (Database.unit) runs whole on the SQLite thread, which owns the sqlite3
connection. Handing each of its Core statements through SQLAlchemy's async execution stack
(AsyncSession -> greenlet -> Session -> Connection -> execution context -> the aiosqlite
adapter -> our thread adapter) cost ~100 us of CPU per statement, ten times what SQLite
takes to run it, and a webhook runs about ten of them: that was most of a webhook's CPU.

So `UnitSession.execute` compiles a statement it has seen before once (with SQLAlchemy's
own compiler and the engine's dialect: the SQL text, bind order and type processors are
exactly what SQLAlchemy would use) and then runs it with the driver directly: parameters
through the compiled bind processors, rows through the result processors, errors turned
into SQLAlchemy's exception classes. Nothing else changes: the same savepoint (the session's
own transaction, started before the first statement), the same autoflush (pending ORM
changes are flushed first), and any statement this path does not cover (ORM-enabled
statements, text, Python-side column defaults, RETURNING with executemany) takes the
ordinary path.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Delete, Insert, Update
from sqlalchemy.sql.elements import (
    ReleaseSavepointClause,
    RollbackToSavepointClause,
    SavepointClause,
)
from sqlalchemy.sql.selectable import Select

_KINDS = (Select, Insert, Update, Delete)
# Statements seen once are remembered (holding them keeps their id from being reused) and
# compiled on the second sighting: hot statements are built once and seen every event,
# while one-off statements built per call would only churn the cache.
_SEEN_MAX = 512
_UNIT_SAVEPOINT = "gatepass_unit"
_PREPARED_MAX = 512


class _Unsupported(Exception):
    pass


class _Prepared:
    __slots__ = (
        "compiled",
        "defaults",
        "expanding",
        "positiontup",
        "processors",
        "result_procs",
        "row",
        "sql",
        "stmt",
    )

    def __init__(
        self, stmt: Any, keys: tuple[str, ...], dialect: Dialect, many: bool = False
    ) -> None:
        # for_executemany: as SQLAlchemy compiles for a list of parameter sets, without
        # the implicit RETURNING of the primary key that PostgreSQL's single-row INSERT gets
        # (an explicit RETURNING stays, and such a statement takes the ordinary path).
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys), for_executemany=many)
        if compiled.schema_translate_map or compiled.literal_execute_params:
            raise _Unsupported
        # Columns the statement leaves out get their defaults here, as SQLAlchemy's
        # execution context would set them; only plain values (a callable default needs
        # that context: left to the ordinary path).
        self.defaults: list[tuple[str, Any]] = []
        key_of = getattr(compiled, "_get_bind_name_for_col", None) or (lambda c: c.key)
        for c in compiled.insert_prefetch or compiled.update_prefetch or ():
            arg, is_scalar, _callable, _sentinel = (
                c._default_description_tuple
                if compiled.insert_prefetch
                else c._onupdate_description_tuple
            )
            if not is_scalar or key_of(c) not in (compiled.positiontup or ()):
                raise _Unsupported
            self.defaults.append((key_of(c), arg))
        self.stmt = stmt
        self.compiled = compiled
        self.sql = compiled.string
        self.positiontup = compiled.positiontup
        self.processors = compiled._bind_processors
        self.expanding = bool(compiled.post_compile_params)
        columns = compiled._result_columns
        # A row class per statement (field names known only now): typed as its constructor.
        self.row: Callable[..., tuple[Any, ...]] | None
        if columns:
            # mypy supports namedtuple() only with literal field names.
            self.row = namedtuple(  # type: ignore[misc]
                "Row",
                [c.keyname for c in columns],
                rename=True,
            )
            procs = [c.type._cached_result_processor(dialect, None) for c in columns]
            self.result_procs = procs if any(procs) else None
        else:
            self.row = None
            self.result_procs = None

    def bind(self, params: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        compiled = self.compiled
        values = compiled.construct_params(params, escape_names=False)
        for key, default in self.defaults:
            values[key] = default
        sql, order, procs = self.sql, self.positiontup, self.processors
        if self.expanding:
            state = compiled._process_parameters_for_postcompile(values)
            sql, order = state.statement, state.positiontup
            procs = {**procs, **state.processors}
        return sql, tuple(procs[k](values[k]) if k in procs else values[k] for k in order)

    def rows(self, raw: list[Any]) -> list[Any]:
        make, procs = self.row, self.result_procs
        if make is None:
            return raw
        if procs is None:
            return [make(*r) for r in raw]
        return [make(*(p(v) if p else v for p, v in zip(procs, r, strict=True))) for r in raw]


class FastResult:
    """The part of SQLAlchemy's Result the hot paths use, over rows already fetched."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    fetchall = all

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if not self._rows:
            raise exc.NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise exc.MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0]

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise exc.MultipleResultsFound("Multiple rows were found when one or none was required")
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        r = self.first()
        return None if r is None else r[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        r = self.one_or_none()
        return None if r is None else r[0]

    def scalars(self) -> FastResult:
        """The first column of each row (first/one/all then give values, not rows)."""
        return FastResult([r[0] for r in self._rows], self.rowcount)


class Executor:
    """Prepared statements for one dialect over one sqlite3 connection (the thread's)."""

    def __init__(self, conn: sqlite3.Connection, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect
        # SQLite: the unit's savepoint, rendered by the dialect's compiler once (what SQLAlchemy's
        # begin_nested() emits, without its bookkeeping around every unit).
        self._savepoint, self._release, self._rollback_to = (
            str(c(_UNIT_SAVEPOINT).compile(dialect=dialect))
            for c in (SavepointClause, ReleaseSavepointClause, RollbackToSavepointClause)
        )
        self._seen: OrderedDict[int, Any] = OrderedDict()
        self._prepared: OrderedDict[tuple[int, tuple[str, ...], bool], _Prepared | None] = (
            OrderedDict()
        )

    def begin_unit(self) -> None:
        self._control(self._savepoint)

    def release_unit(self) -> None:
        self._control(self._release)

    def rollback_unit(self) -> None:
        self._control(self._rollback_to)
        self._control(self._release)

    def _control(self, sql: str) -> None:
        try:
            self.conn.execute(sql).close()
        except sqlite3.Error as e:
            raise exc.DBAPIError.instance(sql, (), e, sqlite3.Error, dialect=self.dialect) from e

    def prepared(self, stmt: Any, keys: tuple[str, ...], many: bool = False) -> _Prepared | None:
        key = (id(stmt), keys, many)
        cached = self._prepared.get(key, False)  # False: never seen under this key
        if cached is None or (isinstance(cached, _Prepared) and cached.stmt is stmt):
            return cached
        if self._seen.get(id(stmt)) is not stmt:
            self._seen[id(stmt)] = stmt
            if len(self._seen) > _SEEN_MAX:
                self._seen.popitem(last=False)
            return None
        try:
            p = _Prepared(stmt, keys, self.dialect, many)
        except _Unsupported:
            p = None
        if p is None:
            # Remember the refusal against this very object (held by _seen meanwhile).
            self._prepared[key] = None
            return None
        self._prepared[key] = p
        if len(self._prepared) > _PREPARED_MAX:
            self._prepared.popitem(last=False)
        return p

    def run(
        self, p: _Prepared, params: dict[str, Any] | Sequence[dict[str, Any]] | None, many: bool
    ) -> FastResult:
        try:
            if many:
                assert isinstance(params, Sequence)
                bound = [p.bind(dict(x)) for x in params]
                cur = self.conn.executemany(bound[0][0], [b[1] for b in bound])
            else:
                sql, args = p.bind(dict(params or {}))  # type: ignore[arg-type]
                cur = self.conn.execute(sql, args)
            try:
                raw = cur.fetchall() if cur.description else []
                return FastResult(p.rows(raw), cur.rowcount)
            finally:
                cur.close()
        except sqlite3.Error as e:
            raise exc.DBAPIError.instance(
                p.sql, params, e, sqlite3.Error, dialect=self.dialect
            ) from e


class PgExecutor(Executor):
    """The same over asyncpg, for PostgreSQL units of work: the statement goes to the
    session's own connection (its transaction started first, as SQLAlchemy's adapter does),
    through the adapter's prepared-statement cache."""

    def __init__(self, dialect: Dialect) -> None:
        super().__init__(None, dialect)  # type: ignore[arg-type]

    def _control(self, sql: str) -> None:
        raise NotImplementedError("PostgreSQL units are transactions of their own")

    async def arun(
        self,
        session: AsyncSession,
        p: _Prepared,
        params: dict[str, Any] | Sequence[dict[str, Any]] | None,
        many: bool,
    ) -> FastResult:
        # SQLAlchemy's asyncpg adapter connection, used through its private API: untyped.
        adapter: Any = session.__dict__.get("_fast_adapter")
        if adapter is None:  # once per unit: the connection its transaction holds
            conn = await session.connection()
            adapter = (await conn.get_raw_connection()).dbapi_connection
            session.__dict__["_fast_adapter"] = adapter
        async with adapter._execute_mutex:
            if adapter._transaction is None:
                await adapter._start_transaction()
            try:
                if many:
                    assert isinstance(params, Sequence)
                    bound = [p.bind(dict(x)) for x in params]
                    await adapter._connection.executemany(bound[0][0], [b[1] for b in bound])
                    return FastResult([], -1)
                sql, args = p.bind(dict(params or {}))  # type: ignore[arg-type]
                stmt, _attributes = await adapter._prepare(
                    sql, adapter._invalidate_schema_cache_asof
                )
                raw = await stmt.fetch(*args)
                status = (stmt.get_statusmsg() or "").rsplit(" ", 1)[-1]
                return FastResult(p.rows(raw), int(status) if status.isdigit() else -1)
            except Exception as e:  # translated as SQLAlchemy would
                try:
                    adapter._handle_exception(e)
                except self.dialect.loaded_dbapi.Error as dbapi_error:
                    raise exc.DBAPIError.instance(
                        p.sql,
                        params,
                        dbapi_error,
                        self.dialect.loaded_dbapi.Error,
                        dialect=self.dialect,
                    ) from e
                raise


class UnitSession(AsyncSession):
    """The session a unit of work gets on the SQLite thread: pre-built Core statements run
    through `Executor`, everything else as usual. The unit runs inside a savepoint of its
    own (Executor.begin_unit, GroupCommit._run_unit); what goes the ordinary way nests one
    more inside it (join_transaction_mode="create_savepoint")."""

    def has_work(self) -> bool:
        """Whether the ORM side holds anything to flush, commit or roll back."""
        sync = self.sync_session
        return bool(
            sync.in_transaction() or sync._new or sync._deleted or sync.identity_map._modified
        )

    executor: Executor | None = None

    async def execute(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        ex = self.executor
        if (
            ex is None or kw or not isinstance(statement, _KINDS) or statement._propagate_attrs
        ):  # ORM-enabled: identity map, loaders
            return await super().execute(statement, params, **kw)
        many = isinstance(params, list)
        if many and not params:
            return await super().execute(statement, params, **kw)
        keys = tuple(params[0] if many else params or ())
        p = ex.prepared(statement, keys, many)
        if p is None or (many and p.row is not None):
            return await super().execute(statement, params, **kw)
        sync = self.sync_session
        if sync._new or sync._deleted or sync.identity_map._modified:
            await self.flush()  # autoflush, as Session.execute would
        if isinstance(ex, PgExecutor):
            return await ex.arun(self, p, params, many)
        return ex.run(p, params, many)
