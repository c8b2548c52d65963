"""Webhook ingestion: verify, dedupe, apply, and only then acknowledge.

Everything a webhook changes happens in ONE transaction with its webhook_event row, so an
acknowledged event is never lost and a repeated one is a no-op. A failure rolls the whole
transaction back, records the error on its own, and answers 500 so the provider retries.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from billing.errors import PaymentError, WebhookRejected
from billing.events import EventKind, WebhookNotice
from billing.payments import Outcome, Result, apply_event
from billing.provider import EventResolver, PaymentProvider, WebhookAck
from storage.db import Database
from storage.models import WebhookEvent
from storage.queries import insert_ignore
from storage.sql import Sql

log = logging.getLogger(__name__)
DUPLICATE = Outcome.DUPLICATE


async def _claim(session: AsyncSession, provider: str, notice: WebhookNotice,
                 now: datetime) -> int | None:
    """Claim this event for processing; the id of its row if it was here before (a failed
    earlier try, now locked), 0 if it is new, None if it was processed already (duplicate).

    A new row is inserted already marked processed: the whole transaction commits or none
    of it does, so that mark is only ever seen together with the event's effects. This
    saves the hot path a read and an update per event.
    """
    sql = await Sql.of(session)
    at = sql.ts(now)
    new = await sql.one(
        "INSERT INTO webhook_event (provider, event_id, event_type, received_at, processed_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider, event_id) DO NOTHING RETURNING id",
        (provider, notice.event_id, notice.event_type, at, at))
    if new is not None:
        return 0
    row = await sql.one("SELECT id, processed_at FROM webhook_event "
                        f"WHERE provider = ? AND event_id = ?{sql.lock}",
                        (provider, notice.event_id))
    assert row is not None
    return None if row[1] is not None else int(row[0])


async def process_notice(db: Database, provider: str, notice: WebhookNotice,
                         now: datetime) -> Result:
    """Record, dedupe and apply one verified notice in ONE transaction; its Result
    (DUPLICATE when it was processed before). The single path for webhooks and for
    reconciliation, which passes a notice of its own with a deterministic event id.

    On failure the transaction rolls back, the error is kept on the unprocessed event row,
    and the exception propagates (the caller answers 500 or retries later).
    """
    try:
        async with db.transaction() as session:
            earlier = await _claim(session, provider, notice, now)
            if earlier is None:
                return Result(DUPLICATE)
            outcome = Result(Outcome.IGNORED)
            if notice.event is not None:
                outcome = await apply_event(session, notice.event, now)
            error = outcome.error
            if earlier or error:
                await session.execute(
                    update(WebhookEvent)
                    .where(WebhookEvent.provider == provider,
                           WebhookEvent.event_id == notice.event_id)
                    .values(processed_at=now, error=error))
    except Exception as e:
        log.exception("%s event %s failed", provider, notice.event_id)
        await _record_failure(db, provider, notice, now, e)
        raise
    return outcome


async def ingest_webhook(
    db: Database, provider: PaymentProvider, headers: Mapping[str, str], body: bytes,
    now: datetime, *, on_commit: Callable[[], None] | None = None,
) -> tuple[WebhookAck, str]:
    """Returns the HTTP answer and an outcome word (for logs and metrics)."""
    try:
        notice = provider.parse_webhook(headers, body)
    except WebhookRejected as e:
        return WebhookAck(400, f"rejected: {e}".encode()), "rejected"
    if isinstance(provider, EventResolver):
        # The provider's API knows what the event does not say; asked outside any
        # transaction, and only when our own records cannot place the event.
        try:
            if await _unplaced_reversal(db, notice):
                notice = await provider.resolve(notice)
        except Exception as e:  # noqa: BLE001 - a failed lookup must become a retry
            log.warning("%s event %s: lookup failed, asking for a retry: %s", provider.name,
                        notice.event_id, e, exc_info=not isinstance(e, PaymentError))
            return WebhookAck(500, b"lookup failed; retry"), "error"
    try:
        outcome = await process_notice(db, provider.name, notice, now)
    except Exception:  # noqa: BLE001 - any failure must become a retry, not a loss
        return WebhookAck(500, b"internal error; retry"), "error"
    if outcome.outcome is DUPLICATE:
        return provider.ack(), DUPLICATE.value
    if on_commit is not None:
        on_commit()
    return provider.ack(), outcome.outcome.value


async def _unplaced_reversal(db: Database, notice: WebhookNotice) -> bool:
    """A refund or dispute with no order number whose payment ids are none we recorded."""
    e = notice.event
    if e is None or e.kind not in (EventKind.REFUNDED, EventKind.DISPUTED,
                                   EventKind.DISPUTE_CLOSED) or e.order_no:
        return False
    ids = [i for i in (e.provider_payment_id, *e.payment_refs) if i]
    if not ids:
        return True
    async with db.session() as s:
        sql = await Sql.of(s)
        known = await sql.one(
            "SELECT 1 FROM payment WHERE provider = ? AND provider_payment_id IN "
            f"({sql.marks(len(ids))}) LIMIT 1", (e.provider, *ids))
    return known is None


async def _record_failure(db: Database, provider: str, notice: WebhookNotice, now: datetime,
                          err: Exception) -> None:
    """Keep the error on the (unprocessed) event row, so the retry is seen and explained."""
    try:
        async with db.transaction() as session:
            await insert_ignore(session, WebhookEvent, {
                "provider": provider, "event_id": notice.event_id,
                "event_type": notice.event_type, "received_at": now,
            }, conflict=["provider", "event_id"])
            await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.provider == provider, WebhookEvent.event_id == notice.event_id,
                       WebhookEvent.processed_at.is_(None))  # type: ignore[union-attr]
                .values(error=f"{type(err).__name__}: {err}"[:1000])
            )
    except Exception:  # noqa: BLE001 - the database itself may be what failed
        log.exception("could not record webhook failure")
