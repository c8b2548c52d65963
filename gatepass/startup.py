"""Start-up failures as one line naming the cause (and the key to fix), not a traceback.

Each `*_problem` function reads an exception raised while reaching one outside thing (the
database, the Bot API, the listening socket) and says what went wrong, or returns None for
an exception it does not recognise (that one stays a bug and keeps its traceback).
"""

from __future__ import annotations

import errno
import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL, make_url


class StartupError(Exception):
    """Something outside gatepass is not as the config says: one line for the operator."""


@contextmanager
def failing_as(explain: Callable[[BaseException], str | None]) -> Iterator[None]:
    """Re-raise what `explain` recognises as StartupError (the original as its cause)."""
    try:
        yield
    except StartupError:
        raise
    except Exception as e:
        message = explain(e)
        if message is None:
            raise
        raise StartupError(message) from e


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


# -- the database --------------------------------------------------------------------------


def where(url: str) -> str:
    """The database without its password: host:port/name, or the SQLite file."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return f"SQLite file {u.database}"
    return f"PostgreSQL at {u.host}:{u.port or 5432}/{u.database}"


def check_sqlite_folder(url: str) -> None:
    """A SQLite file can be created only in a folder that exists (SQLite's own message is
    "unable to open database file")."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database:
        return
    path = Path(u.database)
    if path.is_dir():
        raise StartupError(f"database.url: {path} is a directory, not a SQLite file")
    if not path.parent.is_dir():
        raise StartupError(
            f"database.url: the folder {path.parent} of the SQLite file does "
            "not exist; create it or fix database.url"
        )


def database_problem(url: str, exc: BaseException) -> str | None:
    u: URL = make_url(url)
    place = where(url)
    for e in _chain(exc):
        state = getattr(e, "sqlstate", None)
        if state == "3D000":
            return (
                f"database: the database {u.database!r} does not exist on {u.host}:"
                f"{u.port or 5432}; create it (createdb {u.database}) or fix database.url"
            )
        if state in ("28P01", "28000"):
            return (
                f"database: {u.host}:{u.port or 5432} refused user {u.username!r} "
                "(wrong password, or not allowed); fix database.url"
            )
        if isinstance(e, socket.gaierror):
            return f"database: cannot resolve the host {u.host!r} of database.url"
        if isinstance(e, ConnectionRefusedError):
            return f"database: cannot connect to {place} (connection refused: is it running?)"
        if isinstance(e, TimeoutError):
            return f"database: {place} did not answer in time"
        if isinstance(e, OSError):
            return f"database: cannot connect to {place} ({e.strerror or e})"
        if isinstance(e, sqlite3.DatabaseError):
            return f"database: cannot use the {place} ({e})"
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, SQLAlchemyError):
        first = str(exc).splitlines()[0]
        return (
            f"database error: {exc.__class__.__name__}: {first} "
            "(is the schema up to date? gatepass db upgrade)"
        )
    return None


# -- the Bot API ---------------------------------------------------------------------------

TOKEN_REFUSED = (
    "telegram.token: Telegram refused the token (401 Unauthorized from getMe); "
    "copy it again from @BotFather"
)


def unreachable(api_server: str, reason: str) -> str:
    return f"telegram.api_server: cannot reach the Bot API at {api_server} ({reason})"


def telegram_problem(api_server: str, exc: BaseException) -> str | None:
    from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError

    if isinstance(exc, TelegramUnauthorizedError):
        return TOKEN_REFUSED
    if isinstance(exc, TelegramNetworkError):
        return unreachable(api_server, exc.message.removeprefix("HTTP Client says - "))
    if isinstance(exc, (OSError, TimeoutError)):
        return unreachable(api_server, str(exc) or exc.__class__.__name__)
    return None


# -- the web server ------------------------------------------------------------------------


def listen_problem(host: str, port: int, exc: BaseException) -> str | None:
    if not isinstance(exc, OSError):
        return None
    if exc.errno == errno.EADDRINUSE:
        return (
            f"web.port: {host}:{port} is already in use (another gatepass, or another "
            "program, listens there); stop it or choose another web.port"
        )
    if exc.errno == errno.EACCES:
        return f"web.port: not allowed to listen on {host}:{port} (ports below 1024 need root)"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return f"web.host: cannot listen on {host}:{port} ({exc.strerror or exc})"
    return f"web: cannot listen on {host}:{port} ({exc.strerror or exc})"
