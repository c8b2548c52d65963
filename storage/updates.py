"""The Telegram updates already applied (table telegram_update): exactly-once at the edge."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db import Database
from storage.models import TelegramUpdate
from storage.queries import insert_ignore

# Telegram keeps an unconfirmed update for 24 hours; a few days covers every redelivery.
UPDATE_RETENTION = timedelta(days=3)


async def claim_update(session: AsyncSession, bot_id: int, update_id: int, now: datetime) -> bool:
    """Record the update as applied in the caller's transaction; False if it already was.

    The row commits with whatever the handler changed, or not at all: an update whose
    handler failed is not marked and is applied when Telegram sends it again. On PostgreSQL a
    second replica handling the same update waits here on the unique index until the first
    commits (then skips) or rolls back (then applies it)."""
    new_id = await insert_ignore(
        session,
        TelegramUpdate,
        {
            "bot_id": bot_id,
            "update_id": update_id,
            "applied_at": now,
        },
        conflict=["bot_id", "update_id"],
    )
    return new_id is not None


async def release_update(db: Database, bot_id: int, update_id: int) -> None:
    """Forget that an update was applied: its handler committed part way, then failed (the
    rest rolled back), so Telegram's next delivery must apply it again."""
    async with db.transaction() as s:
        await s.execute(
            delete(TelegramUpdate).where(
                col(TelegramUpdate.bot_id) == bot_id, col(TelegramUpdate.update_id) == update_id
            )
        )


async def prune_updates(db: Database, now: datetime, keep: timedelta = UPDATE_RETENTION) -> int:
    """Forget updates older than Telegram would ever send again; returns how many."""
    async with db.transaction() as s:
        result = await s.execute(
            delete(TelegramUpdate).where(col(TelegramUpdate.applied_at) < now - keep)
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
