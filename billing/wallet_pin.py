"""The optional wallet PIN (/pin): spending from the wallet asks for it when it is set.

Stored as an Argon2id hash (argon2-cffi), never the digits. `rules.pin_max_tries` wrong
tries in a row lock spending for `rules.pin_lock_minutes`; a right PIN resets the count.
Hashing is deliberately slow (tens of milliseconds), so it runs on a worker thread and the
event loop keeps serving everyone else meanwhile.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billing.wallet import WalletRules
from membership.errors import RuleError
from storage.dialects import insert_ignore
from storage.models import WalletPin, table

_PIN = table(WalletPin)
_NEW_PIN = insert_ignore(_PIN, ("user_id",), returning=())
_DIGITS = re.compile(r"[0-9]{4,6}")
# argon2-cffi's defaults are RFC 9106's low-memory profile (Argon2id, 64 MiB, 3 passes).
_HASHER = PasswordHasher()


class PinCheck(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"
    NOT_SET = "not_set"


@dataclass(frozen=True)
class PinResult:
    status: PinCheck
    # Wrong tries left before the lock (0 when locked).
    tries_left: int
    # Until when spending is locked (LOCKED only).
    locked_until: datetime | None = None


def _well_formed(pin: str) -> bool:
    return _DIGITS.fullmatch(pin) is not None


def _verify(pin_hash: str, pin: str) -> bool:
    try:
        return _HASHER.verify(pin_hash, pin)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def set_pin(session: AsyncSession, user_id: int, pin: str, now: datetime) -> None:
    """Set (or replace) the user's PIN: 4 to 6 digits, else RuleError "pin_bad". A new PIN
    starts with no wrong tries and no lock."""
    if not _well_formed(pin):
        raise RuleError("pin_bad")
    pin_hash = await asyncio.to_thread(_HASHER.hash, pin)
    await session.execute(
        _NEW_PIN(session),
        {
            "user_id": user_id,
            "pin_hash": pin_hash,
            "failed_attempts": 0,
            "locked_until": None,
            "updated_at": now,
        },
    )
    await session.execute(
        update(_PIN)
        .where(_PIN.c.user_id == user_id)
        .values(pin_hash=pin_hash, failed_attempts=0, locked_until=None, updated_at=now)
    )


async def clear_pin(session: AsyncSession, user_id: int, now: datetime) -> bool:
    """Remove the user's PIN (the caller checked it first); False when none was set."""
    gone: object = await session.execute(delete(_PIN).where(_PIN.c.user_id == user_id))
    return bool(getattr(gone, "rowcount", 0))


async def check_pin(
    session: AsyncSession, user_id: int, pin: str, rules: WalletRules, now: datetime
) -> PinResult:
    """Check `pin` against the user's PIN and count a wrong one. NOT_SET when the user has
    none; LOCKED (with locked_until) while a lock runs, whatever the PIN, and on the wrong
    try that starts it. Anything that is not 4-6 digits is a wrong try like any other."""
    # The row is locked (PostgreSQL; SQLite has one writer) so that wrong tries made at the
    # same moment each count.
    row = (
        await session.execute(
            select(_PIN.c.pin_hash, _PIN.c.failed_attempts, _PIN.c.locked_until)
            .where(_PIN.c.user_id == user_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        return PinResult(PinCheck.NOT_SET, rules.pin_max_tries)
    pin_hash, failed, locked_until = str(row[0]), int(row[1]), row[2]
    if locked_until is not None and locked_until > now:
        return PinResult(PinCheck.LOCKED, 0, locked_until)
    if locked_until is not None:
        failed = 0  # the lock ran out: a fresh set of tries
    if _well_formed(pin) and await asyncio.to_thread(_verify, pin_hash, pin):
        values: dict[str, object] = {"failed_attempts": 0, "locked_until": None, "updated_at": now}
        # A hash made with weaker parameters than today's is upgraded while the PIN is known.
        if _HASHER.check_needs_rehash(pin_hash):
            values["pin_hash"] = await asyncio.to_thread(_HASHER.hash, pin)
        await session.execute(update(_PIN).where(_PIN.c.user_id == user_id).values(**values))
        return PinResult(PinCheck.OK, rules.pin_max_tries)
    failed += 1
    if failed >= rules.pin_max_tries:
        until = now + timedelta(minutes=rules.pin_lock_minutes)
        await session.execute(
            update(_PIN)
            .where(_PIN.c.user_id == user_id)
            .values(failed_attempts=0, locked_until=until, updated_at=now)
        )
        return PinResult(PinCheck.LOCKED, 0, until)
    await session.execute(
        update(_PIN)
        .where(_PIN.c.user_id == user_id)
        .values(failed_attempts=failed, locked_until=None, updated_at=now)
    )
    return PinResult(PinCheck.WRONG, rules.pin_max_tries - failed)
