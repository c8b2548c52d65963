"""Small shared queries and writers used by billing and membership."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.dialects import PerDialect
from storage.dialects import insert_ignore as insert_ignore_stmt
from storage.models import AuditLog, Outbox, User, table

FIRST_NAME_MAX = 128  # storage.models.User.first_name


async def get_or_create_user(
    session: AsyncSession,
    platform: str,
    platform_user_id: str,
    now: datetime,
    *,
    username: str | None = None,
    first_name: str | None = None,
    language: str | None = None,
) -> User:
    """The user row for a platform identity, created on first sight; names kept fresh.

    Two updates from a brand-new user can arrive at once; on PostgreSQL both sessions would
    INSERT, so the insert ignores the unique conflict and the row is read back either way.
    """
    # A name is what the platform says it is: a WeChat puppet's (a remark, a WeCom name) can
    # be longer than the column, which PostgreSQL would refuse with the whole message.
    first_name = first_name[:FIRST_NAME_MAX] if first_name else first_name
    query = select(User).where(
        col(User.platform) == platform, col(User.platform_user_id) == platform_user_id
    )
    user = (await session.execute(query)).scalar_one_or_none()
    if user is None:
        await insert_ignore(
            session,
            User,
            {
                "platform": platform,
                "platform_user_id": platform_user_id,
                "username": username,
                "first_name": first_name,
                "language": language,
                "refund_policy": "revoke",
                "created_at": now,
            },
            conflict=["platform", "platform_user_id"],
        )
        user = (await session.execute(query)).scalar_one()
        return user
    if username and user.username != username:
        user.username = username
    if first_name and user.first_name != first_name:
        user.first_name = first_name
    return user


def audit(
    session: AsyncSession,
    actor: str,
    action: str,
    target: str,
    now: datetime,
    detail: str | None = None,
) -> None:
    session.add(
        AuditLog(
            actor=actor,
            action=action,
            target=target,
            at=now,
            detail=(detail or None) and detail[:1000],
        )
    )


_AUDIT_INSERT = insert(table(AuditLog))


async def audit_now(
    session: AsyncSession,
    actor: str,
    action: str,
    target: str,
    now: datetime,
    detail: str | None = None,
) -> None:
    """audit() for the hot path: one Core INSERT at once instead of an ORM flush at commit."""
    await session.execute(
        _AUDIT_INSERT,
        {
            "actor": actor,
            "action": action,
            "target": target,
            "at": now,
            "detail": (detail or None) and detail[:1000],
        },
    )


def enqueue(
    session: AsyncSession, kind: str, platform: str, payload: dict[str, Any], now: datetime
) -> Outbox:
    """Append an outbox row in the caller's transaction: it is sent only if that commits."""
    row = Outbox(kind=kind, platform=platform, payload=payload, next_attempt_at=now, created_at=now)
    session.add(row)
    return row


_INSERT_IGNORE: dict[tuple[str, tuple[str, ...]], PerDialect[Any]] = {}


async def insert_ignore(
    session: AsyncSession, model: type[Any], values: dict[str, Any], conflict: list[str]
) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING; returns the new id, or None if the row existed.

    The conflict is decided by the database's unique index, so concurrent duplicates on
    PostgreSQL resolve without a race.
    """
    key = (table(model).name, tuple(conflict))
    stmt = _INSERT_IGNORE.get(key)
    if stmt is None:
        stmt = _INSERT_IGNORE[key] = insert_ignore_stmt(table(model), conflict)
    result = await session.execute(stmt(session), values)
    return result.scalar_one_or_none()
