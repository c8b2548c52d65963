"""Webhook ingestion: verify, dedupe, apply, and only then acknowledge.

Everything a webhook changes happens in ONE transaction with its webhook_event row (which
keeps the verified body, for `gatepass webhooks replay`), so an acknowledged event is never
lost and a repeated one is a no-op. A failure rolls the whole transaction back, records the
error on its own, and answers 500 so the provider retries.

An unverified request (bad signature, malformed signature header) is 400 and stores nothing.
A verified body that cannot be used (billing.errors.MalformedEvent) is stored raw with its
error, marked processed, and acknowledged: retrying would not make it usable.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy import bindparam, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.errors import MalformedEvent, PaymentError, WebhookRejected
from billing.events import EventKind, WebhookNotice
from billing.payments import Outcome, Result, apply_event
from billing.provider import EventResolver, PaymentProvider, WebhookAck, WebhookRefusal
from storage.db import Database
from storage.dialects import insert_ignore as insert_ignore_stmt
from storage.models import Payment, WebhookEvent, table
from storage.queries import insert_ignore

log = logging.getLogger(__name__)
DUPLICATE = Outcome.DUPLICATE

_EVENTS, _PAYMENTS = table(WebhookEvent), table(Payment)
_CLAIM = insert_ignore_stmt(_EVENTS, ("provider", "event_id"))
_EARLIER = (
    select(_EVENTS.c.id, _EVENTS.c.processed_at, _EVENTS.c.error)
    .where(_EVENTS.c.provider == bindparam("provider"), _EVENTS.c.event_id == bindparam("event_id"))
    .with_for_update()
)
_KNOWN_PAYMENT = (
    select(literal(1))
    .select_from(_PAYMENTS)
    .where(
        _PAYMENTS.c.provider == bindparam("provider"),
        _PAYMENTS.c.provider_payment_id.in_(bindparam("ids", expanding=True)),
    )
    .limit(1)
)


async def _claim(
    session: AsyncSession,
    provider: str,
    notice: WebhookNotice,
    now: datetime,
    raw_body: bytes | None = None,
    replay: bool = False,
) -> int | None:
    """Claim this event for processing; the id of its row if it was here before (a failed
    earlier try, now locked), 0 if it is new, None if it was processed already (duplicate).
    On `replay`, a row processed with an error is claimed again too.

    A new row is inserted already marked processed: the whole transaction commits or none
    of it does, so that mark is only ever seen together with the event's effects. This
    saves the hot path a read and an update per event.
    """
    new = (
        await session.execute(
            _CLAIM(session),
            {
                "provider": provider,
                "event_id": notice.event_id,
                "event_type": notice.event_type,
                "received_at": now,
                "processed_at": now,
                "raw_body": raw_body,
            },
        )
    ).first()
    if new is not None:
        return 0
    row = (
        await session.execute(_EARLIER, {"provider": provider, "event_id": notice.event_id})
    ).first()
    assert row is not None
    if row[1] is None or (replay and row[2] is not None):
        return int(row[0])
    return None


async def apply_notice(
    session: AsyncSession,
    provider: str,
    notice: WebhookNotice,
    now: datetime,
    *,
    raw_body: bytes | None = None,
    replay: bool = False,
) -> Result:
    """The unit of work of one verified notice, in the caller's transaction: claim its
    webhook_event row (DUPLICATE when it was processed before), apply its event, and keep
    an outcome that is not fine as the row's error. The caller commits, or rolls back on an
    exception (then nothing of it is stored).

    process_notice runs it in a transaction of its own; a Telegram update that carries
    money (a Stars payment) runs it in the update's own transaction, so the update and its
    effects are stored together, before Telegram is told.
    """
    earlier = await _claim(session, provider, notice, now, raw_body, replay)
    if earlier is None:
        return Result(DUPLICATE)
    outcome = Result(Outcome.IGNORED)
    if notice.event is not None:
        outcome = await apply_event(session, notice.event, now)
    error = outcome.error
    if earlier or error:
        await session.execute(
            update(WebhookEvent)
            .where(
                col(WebhookEvent.provider) == provider,
                col(WebhookEvent.event_id) == notice.event_id,
            )
            .values(processed_at=now, error=error)
        )
    return outcome


async def process_notice(
    db: Database,
    provider: str,
    notice: WebhookNotice,
    now: datetime,
    *,
    raw_body: bytes | None = None,
    replay: bool = False,
) -> Result:
    """Record, dedupe and apply one verified notice in ONE transaction (apply_notice); its
    Result (DUPLICATE when it was processed before). The single path for webhooks and for
    reconciliation, which passes a notice of its own with a deterministic event id.

    On failure the transaction rolls back, the error is kept on the unprocessed event row,
    and the exception propagates (the caller answers 500 or retries later).

    `raw_body` is the verified body, kept on the event's row for replay. `replay` (from
    `gatepass webhooks replay`) also claims a row that was processed with an error.
    """

    async def work(session: AsyncSession) -> Result:
        return await apply_notice(session, provider, notice, now, raw_body=raw_body, replay=replay)

    try:
        # One unit of work: on SQLite it shares a durable commit with the webhooks
        # arriving together (group commit); the answer waits for that commit.
        outcome = await db.unit(work)
    except Exception as e:
        log.exception("%s event %s failed", provider, notice.event_id)
        await _record_failure(db, provider, notice, now, e, raw_body)
        raise
    return outcome


async def ingest_webhook(
    db: Database,
    provider: PaymentProvider,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    on_commit: Callable[[], None] | None = None,
) -> tuple[WebhookAck, str]:
    """Returns the HTTP answer and an outcome word (for logs and metrics).

    Unverified: 400, nothing stored. Verified but unusable: stored raw with its error and
    acknowledged, so the provider stops sending it (`gatepass webhooks replay` applies it
    after a fix). 500 only when our side failed: the provider sends it again.
    """
    try:
        provider.verify_webhook(headers, body)
    except WebhookRejected as e:
        return refusal(provider, 400, f"rejected: {e}"), "rejected"
    try:
        notice = read_notice(provider, body)
    except MalformedEvent as e:
        try:
            stored_as = await store_malformed(db, provider.name, e, body, now)
        except Exception:  # the database failed: a retry, not a loss
            log.exception("%s: could not store a malformed event", provider.name)
            return refusal(provider, 500, "internal error; retry"), "error"
        log.warning("%s event %s stored unapplied: %s", provider.name, stored_as, e)
        return provider.ack(), "malformed"
    ack, result = await ingest_notice(db, provider, notice, now, raw_body=body, on_commit=on_commit)
    return ack, "error" if result is None else result.outcome.value


def refusal(provider: PaymentProvider, status: int, message: str) -> WebhookAck:
    """A refused webhook, answered the way its provider reads one (see WebhookRefusal)."""
    if isinstance(provider, WebhookRefusal):
        return provider.refuse(status, message)
    return WebhookAck(status, message.encode())


def read_notice(provider: PaymentProvider, body: bytes) -> WebhookNotice:
    """provider.parse_event, where anything it raises is the body's MalformedEvent: parsing
    is pure, so even a bug of ours in it is kept with the body for a replay after the fix."""
    try:
        return provider.parse_event(body)
    except MalformedEvent:
        raise
    except Exception as e:  # see above
        raise MalformedEvent(f"cannot read the event ({type(e).__name__})") from e


async def ingest_notice(
    db: Database,
    provider: PaymentProvider,
    notice: WebhookNotice,
    now: datetime,
    *,
    raw_body: bytes | None = None,
    replay: bool = False,
    on_commit: Callable[[], None] | None = None,
) -> tuple[WebhookAck, Result | None]:
    """A verified, parsed notice: resolved with the provider's API when our records cannot
    place it, then applied (process_notice). Shared by webhooks and replays. The answer for
    the provider, and what applying did (None: our side failed, the answer is a 500)."""
    if isinstance(provider, EventResolver):
        # The provider's API knows what the event does not say; asked outside any
        # transaction, and only when our own records cannot place the event.
        try:
            if await _unplaced_reversal(db, notice):
                notice = await provider.resolve(notice)
        except Exception as e:  # a failed lookup must become a retry
            log.warning(
                "%s event %s: lookup failed, asking for a retry: %s",
                provider.name,
                notice.event_id,
                e,
                exc_info=not isinstance(e, PaymentError),
            )
            return refusal(provider, 500, "lookup failed; retry"), None
    try:
        outcome = await process_notice(
            db, provider.name, notice, now, raw_body=raw_body, replay=replay
        )
    except Exception:  # noqa: BLE001 - any failure must become a retry, not a loss
        return refusal(provider, 500, "internal error; retry"), None
    if outcome.outcome is not DUPLICATE and on_commit is not None:
        on_commit()
    return provider.ack(), outcome


def malformed_event_id(err: MalformedEvent, body: bytes) -> str:
    """The body's own event id when it has a storable one, else one derived from the bytes
    (the same body sent again is the same record)."""
    return err.event_id or f"malformed:{hashlib.sha256(body).hexdigest()[:40]}"


async def store_malformed(
    db: Database, provider: str, err: MalformedEvent, body: bytes, now: datetime
) -> str:
    """Keep a verified body we cannot use, with its error, marked processed (nothing of it
    was applied). An event already on record keeps its row, unless it was still waiting for
    a retry: then it is closed with this error. Returns the event id it is stored under."""
    event_id = malformed_event_id(err, body)
    async with db.transaction() as session:
        await record_unusable(session, provider, event_id, err.event_type, str(err), body, now)
    return event_id


async def record_unusable(
    session: AsyncSession,
    provider: str,
    event_id: str,
    event_type: str | None,
    error: str,
    body: bytes,
    now: datetime,
) -> None:
    """In the caller's transaction: keep a verified body that cannot be applied, with its
    error, marked processed (`gatepass webhooks replay` applies it after a fix)."""
    error = f"malformed: {error}"[:1000]
    await insert_ignore(
        session,
        WebhookEvent,
        {
            "provider": provider,
            "event_id": event_id,
            "event_type": event_type,
            "received_at": now,
            "processed_at": now,
            "error": error,
            "raw_body": body,
        },
        conflict=["provider", "event_id"],
    )
    await session.execute(
        update(WebhookEvent)
        .where(
            col(WebhookEvent.provider) == provider,
            col(WebhookEvent.event_id) == event_id,
            col(WebhookEvent.processed_at).is_(None),
        )
        .values(processed_at=now, error=error, raw_body=body)
    )


async def _unplaced_reversal(db: Database, notice: WebhookNotice) -> bool:
    """A refund or dispute with no order number whose payment ids are none we recorded."""
    e = notice.event
    if (
        e is None
        or e.kind not in (EventKind.REFUNDED, EventKind.DISPUTED, EventKind.DISPUTE_CLOSED)
        or e.order_no
    ):
        return False
    ids = [i for i in (e.provider_payment_id, *e.payment_refs) if i]
    if not ids:
        return True
    async with db.session() as s:
        known = (await s.execute(_KNOWN_PAYMENT, {"provider": e.provider, "ids": ids})).first()
    return known is None


async def _record_failure(
    db: Database,
    provider: str,
    notice: WebhookNotice,
    now: datetime,
    err: Exception,
    raw_body: bytes | None = None,
) -> None:
    """Keep the error on the (unprocessed) event row, so the retry is seen and explained."""
    try:
        async with db.transaction() as session:
            await insert_ignore(
                session,
                WebhookEvent,
                {
                    "provider": provider,
                    "event_id": notice.event_id,
                    "event_type": notice.event_type,
                    "received_at": now,
                    "raw_body": raw_body,
                },
                conflict=["provider", "event_id"],
            )
            await session.execute(
                update(WebhookEvent)
                .where(
                    col(WebhookEvent.provider) == provider,
                    col(WebhookEvent.event_id) == notice.event_id,
                    col(WebhookEvent.processed_at).is_(None),
                )
                .values(error=f"{type(err).__name__}: {err}"[:1000])
            )
    except Exception:  # the database itself may be what failed
        log.exception("could not record webhook failure")
