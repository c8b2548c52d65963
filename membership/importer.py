"""`gatepass members import FILE`: access for members who paid elsewhere, from a CSV file.

The file (UTF-8, a BOM is fine, comma-separated, a header row first; column order free,
other columns ignored):

    telegram_id,username,group,expires_at
    123456789,alice,1,2027-01-31
    987654321,,-1001234567890,2026-12-31T18:00:00Z
    555000111,bob,1,

- telegram_id  required: the member's numeric Telegram user id.
- username     optional: without or with @; kept if we have none for them.
- group        our group number (as /setup and /plans show it) or the group's Telegram chat
               id; may be blank, or the column left out, when --group gives it.
- expires_at   an ISO date (access through that whole day, UTC: it ends at the next
               midnight UTC) or an ISO date-time (no offset = UTC); blank = lifetime.

Each row is its own transaction, so a bad row is reported (with its line number) and the
good ones are kept. A row makes sure the member's access runs at least to expires_at: a
member without access is granted it (grant_days: invite through the outbox, audit actor
"import"), one whose access ends earlier is extended to it, one whose access already runs
as long is left alone. Importing the same file twice therefore changes nothing the second
time.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from membership.catalog import MAX_ID
from membership.grants import extend_to, grant_days, is_active
from storage.db import Database
from storage.models import ChatGroup, Membership
from storage.queries import get_or_create_user

COLUMNS = ("telegram_id", "username", "group", "expires_at")
_USER_ID = re.compile(r"^\d{1,19}$")
_USERNAME = re.compile(r"^[A-Za-z0-9_]{3,32}$")
_GROUP = re.compile(r"^#?-?\d{1,20}$")
DAY = timedelta(days=1)


class ImportFileError(Exception):
    """The file as a whole cannot be imported (no header, a required column missing...)."""


class RowError(ValueError):
    """One row is bad; the message says why, in one line."""


@dataclass(frozen=True)
class Row:
    line: int
    telegram_id: str
    username: str | None
    group_ref: str
    expires_at: datetime | None  # None = lifetime


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass
class ImportReport:
    total: int = 0
    granted: int = 0
    extended: int = 0
    unchanged: int = 0
    bad: list[BadRow] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return self.granted + self.extended + self.unchanged


def parse_expiry(text: str, now: datetime) -> datetime | None:
    """A blank is lifetime; a date is through that day (UTC); a date-time is that moment."""
    t = text.strip()
    if not t:
        return None
    try:
        if len(t) == 10:
            at = datetime.combine(date.fromisoformat(t) + DAY, time(), tzinfo=UTC)
        else:
            at = datetime.fromisoformat(t.replace(" ", "T", 1))
    except ValueError:
        raise RowError(
            f"expires_at '{t}' is not an ISO date like 2027-01-31 (or blank for lifetime)"
        ) from None
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    if at <= now:
        raise RowError(f"expires_at '{t}' is in the past")
    return at


def parse_row(line: int, values: dict[str, str], default_group: str | None, now: datetime) -> Row:
    tid = values.get("telegram_id", "").strip()
    if not _USER_ID.match(tid) or int(tid) == 0:
        raise RowError(
            f"telegram_id '{tid}' is not a Telegram user id (a positive number)"
            if tid
            else "telegram_id is missing"
        )
    username = values.get("username", "").strip().lstrip("@") or None
    if username is not None and not _USERNAME.match(username):
        raise RowError(f"username '{username}' is not a Telegram username")
    group = values.get("group", "").strip() or default_group or ""
    if not group:
        raise RowError("group is missing (fill the group column or give --group)")
    if not _GROUP.match(group):
        raise RowError(f"group '{group}' is not a group number or a chat id")
    return Row(
        line,
        str(int(tid)),
        username,
        group.lstrip("#"),
        parse_expiry(values.get("expires_at", ""), now),
    )


def read_rows(
    text: str, now: datetime, default_group: str | None = None
) -> tuple[list[Row], list[BadRow]]:
    """Parse the whole file: (good rows, bad rows). ImportFileError if it has no usable
    header. Blank lines are skipped; line numbers are the file's own (1 = the header)."""
    reader = csv.reader(text.lstrip("\ufeff").splitlines(keepends=True))
    header: list[str] | None = None
    for cells in reader:
        if any(c.strip() for c in cells):
            header = [c.strip().lower() for c in cells]
            break
    if header is None:
        raise ImportFileError(
            "the file is empty; the first line must be a header: " + ",".join(COLUMNS)
        )
    required = ["telegram_id", "expires_at"] + ([] if default_group else ["group"])
    missing = [c for c in required if c not in header]
    if missing:
        hint = " (or give --group)" if "group" in missing else ""
        raise ImportFileError(
            f"the header lacks the column(s) {', '.join(missing)}{hint}; "
            f"expected: {','.join(COLUMNS)}"
        )
    dupes = sorted({c for c in header if c and header.count(c) > 1})
    if dupes:
        raise ImportFileError(f"the header names {', '.join(dupes)} more than once")
    good: list[Row] = []
    bad: list[BadRow] = []
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            bad.append(BadRow(line, f"has {len(cells)} fields; the header has {len(header)}"))
            continue
        try:
            good.append(parse_row(line, dict(zip(header, cells, strict=True)), default_group, now))
        except RowError as e:
            bad.append(BadRow(line, str(e)))
    return good, bad


async def find_group(session: AsyncSession, platform: str, ref: str) -> ChatGroup | None:
    """By our number (`3`) or the platform's chat id (`-100123`); active groups only."""
    ref = ref.strip()
    if not _GROUP.match(ref):
        return None
    ref = ref.lstrip("#")
    if not ref.startswith("-") and int(ref) > MAX_ID:
        return None  # no id of ours, and the database refuses it as a parameter
    cond = col(ChatGroup.chat_id) == ref if ref.startswith("-") else col(ChatGroup.id) == int(ref)
    group = (
        await session.execute(select(ChatGroup).where(cond, col(ChatGroup.platform) == platform))
    ).scalar_one_or_none()
    return group if group is not None and group.active else None


async def import_row(
    session: AsyncSession, row: Row, now: datetime, *, platform: str = "telegram"
) -> str:
    """Apply one row in the caller's transaction: "granted", "extended" or "unchanged"."""
    group = await find_group(session, platform, row.group_ref)
    if group is None:
        raise RowError(f"there is no active group {row.group_ref}")
    user = await get_or_create_user(session, platform, row.telegram_id, now)
    if row.username and not user.username:
        user.username = row.username
    if user.id == group.owner_user_id:
        raise RowError(f"{row.telegram_id} owns group {row.group_ref}")
    reason = (
        f"import line {row.line}: until "
        f"{row.expires_at.isoformat() if row.expires_at else 'lifetime'}"
    )
    m = (
        await session.execute(
            select(Membership)
            .where(col(Membership.user_id) == user.id, col(Membership.chat_group_id) == group.id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if m is not None and is_active(m, now):
        if m.expires_at is None or (row.expires_at is not None and m.expires_at >= row.expires_at):
            return "unchanged"
        if row.expires_at is None:
            await grant_days(session, user, group, None, now, actor="import", reason=reason)
        else:
            await extend_to(
                session, user, group, row.expires_at, None, now, actor="import", reason=reason
            )
        return "extended"
    days = None if row.expires_at is None else math.ceil((row.expires_at - now) / DAY)
    m = await grant_days(session, user, group, days, now, actor="import", reason=reason)
    # grant_days counts whole days from now; the file names the moment. The invite is
    # composed when the outbox delivers it, so it shows this exact end.
    m.expires_at = row.expires_at
    return "granted"


async def import_members(
    db: Database,
    rows: list[Row],
    now: datetime,
    *,
    platform: str = "telegram",
    on_progress: Callable[[int, int], None] | None = None,
    report: ImportReport | None = None,
) -> ImportReport:
    """Apply each row in a transaction of its own; a refused row is rolled back alone."""
    report = report or ImportReport()
    report.total += len(rows)
    for i, row in enumerate(rows, 1):
        try:
            async with db.transaction() as s:
                outcome = await import_row(s, row, now, platform=platform)
        except RowError as e:
            report.bad.append(BadRow(row.line, str(e)))
        except IntegrityError as e:  # e.g. the running bot created the same row meanwhile
            report.bad.append(BadRow(row.line, f"the database refused it: {e.orig}"))
        else:
            setattr(report, outcome, getattr(report, outcome) + 1)
        if on_progress is not None:
            on_progress(i, len(rows))
    report.bad.sort(key=lambda b: b.line)
    return report
