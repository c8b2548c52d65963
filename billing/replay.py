"""Stored webhook bodies: replaying one through the ingest path, and dropping old ones.

Every verified body is kept on its webhook_event row (billing.ingest). After a bug that
mishandled some events is fixed, `gatepass webhooks replay <provider> <event_id>` runs the
stored body again: parsed without a signature check (it was verified when it arrived), then
the very path a webhook takes (resolve, process_notice), in one transaction with the row.
Idempotent: an event processed without error is not touched; one that failed, or was stored
unapplied as malformed, is applied now and its error cleared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlmodel import col

from billing.errors import MalformedEvent
from billing.ingest import DUPLICATE, ingest_notice, read_notice
from billing.provider import PaymentProvider
from storage.db import Database
from storage.models import WebhookEvent


class ReplayStatus(StrEnum):
    APPLIED = "applied"  # run again now, with an OK outcome
    ALREADY_PROCESSED = "already_processed"  # processed without error before: nothing to do
    NOT_FOUND = "not_found"
    NO_BODY = "no_body"  # stored before bodies were kept, or dropped
    FAILED = "failed"  # still malformed, or the outcome is an error


@dataclass(frozen=True)
class ReplayResult:
    status: ReplayStatus
    detail: str = ""  # the outcome word, or why it failed

    @property
    def ok(self) -> bool:
        return self.status in (ReplayStatus.APPLIED, ReplayStatus.ALREADY_PROCESSED)


async def replay_event(
    db: Database, provider: PaymentProvider, event_id: str, now: datetime
) -> ReplayResult:
    async with db.session() as s:
        row = (
            await s.execute(
                select(
                    col(WebhookEvent.processed_at),
                    col(WebhookEvent.error),
                    col(WebhookEvent.raw_body),
                ).where(
                    col(WebhookEvent.provider) == provider.name,
                    col(WebhookEvent.event_id) == event_id,
                )
            )
        ).one_or_none()
    if row is None:
        return ReplayResult(ReplayStatus.NOT_FOUND)
    processed_at, error, body = row
    if processed_at is not None and error is None:
        return ReplayResult(ReplayStatus.ALREADY_PROCESSED)
    if body is None:
        return ReplayResult(ReplayStatus.NO_BODY)
    try:
        notice = read_notice(provider, body)
    except MalformedEvent as e:
        await _set_error(db, provider.name, event_id, f"malformed: {e}", now)
        return ReplayResult(ReplayStatus.FAILED, f"still malformed: {e}")
    # Recorded under the row replayed (a body stored malformed may be keyed on its digest).
    notice = replace(notice, event_id=event_id)
    _ack, result = await ingest_notice(db, provider, notice, now, raw_body=body, replay=True)
    if result is None:
        return ReplayResult(ReplayStatus.FAILED, "our side failed (see the log); try again")
    if result.outcome is DUPLICATE:  # a concurrent replay or delivery got there first
        return ReplayResult(ReplayStatus.ALREADY_PROCESSED)
    status = ReplayStatus.APPLIED if result.ok else ReplayStatus.FAILED
    return ReplayResult(status, result.outcome.value)


async def _set_error(db: Database, provider: str, event_id: str, error: str, now: datetime) -> None:
    async with db.transaction() as s:
        await s.execute(
            update(WebhookEvent)
            .where(col(WebhookEvent.provider) == provider, col(WebhookEvent.event_id) == event_id)
            .values(error=error[:1000], processed_at=now)
        )


async def forget_raw_bodies(
    db: Database, now: datetime, *, keep: timedelta, limit: int = 500
) -> int:
    """Drop the bodies of events received more than `keep` before `now`, at most `limit`
    rows per call (the caller drains in batches); the number dropped."""
    old = (
        select(col(WebhookEvent.id))
        .where(col(WebhookEvent.received_at) < now - keep, col(WebhookEvent.raw_body).is_not(None))
        .limit(limit)
        .scalar_subquery()
    )
    async with db.transaction() as s:
        result = await s.execute(
            update(WebhookEvent).where(col(WebhookEvent.id).in_(old)).values(raw_body=None)
        )
    return int(result.rowcount)  # type: ignore[attr-defined]
