"""Flow 6: pending orders re-checked with their provider, timed-out ones closed.

A webhook can be lost (our outage longer than the provider's retries, a misconfigured
endpoint), so pending orders older than `min_age` are asked about: a paid checkout is
granted through exactly the webhook's path (billing.ingest.process_notice: one
transaction, deduped on a deterministic event id — `reconcile:<order_no>`, or the event id
the provider's own notice carries when it reports one (Telegram Stars: the charge id) — then
on the order's state and the payment's unique id), so a webhook that arrives afterwards
finds the order paid and does nothing.

Orders past their timeout are closed at the provider first (Stripe: the Checkout Session
is expired, so it can no longer be paid) and then marked `expired`. If the provider says
the buyer paid in the meantime, the order is granted instead. A payment that still reaches
us for a closed order (a delayed bank debit, a race with the close) is honoured with access:
`expired` is one of billing.payments.PAYABLE. We grant rather than refund because the buyer
paid for exactly this; a refund would cost them the access and the owner the sale.

Safe with several replicas on one PostgreSQL: rows are claimed in a short transaction with
FOR UPDATE SKIP LOCKED and stamped `reconciled_at` (a lease, also the pace at which an order
is asked again); the provider is called with no transaction open; every state change is a
compare-and-set on `status = 'pending'`, and a grant is deduped like any webhook.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlmodel import col

from billing.errors import PaymentError
from billing.events import EventKind, PaymentEvent, WebhookNotice
from billing.ingest import DUPLICATE, process_notice
from billing.provider import CheckoutStatus, PaymentProvider
from billing.providers.stars_provider import StarsProvider
from billing.stars_reconcile import reconcile_star_subscriptions
from billing.wallet import release_holds
from storage.db import Database
from storage.models import Order
from storage.queries import audit

log = logging.getLogger(__name__)

# A timed-out order whose provider keeps failing (a close refused for good, an API gone) is
# expired here this long past its timeout, rather than asked about at every sweep forever:
# by then its checkout has stopped working at the provider on its own (a Stripe session
# lives at most a day; a WeChat Pay / Alipay code dies at the order's time_expire), and a
# payment that still lands is honoured (`expired` is billing.payments.PAYABLE).
GIVE_UP_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class _Claimed:
    id: int
    order_no: str
    provider: str
    provider_ref: str | None
    timed_out: bool
    overdue: bool  # timed out more than GIVE_UP_AFTER ago


async def _claim(
    db: Database,
    now: datetime,
    *,
    min_age: timedelta,
    order_timeout: timedelta,
    recheck: timedelta,
    limit: int,
) -> list[_Claimed]:
    async with db.transaction() as s:
        rows = list(
            (
                await s.execute(
                    select(Order)
                    .where(
                        col(Order.status) == "pending",
                        col(Order.created_at) <= now - min_age,
                        or_(
                            col(Order.reconciled_at).is_(None),
                            col(Order.reconciled_at) <= now - recheck,
                        ),
                    )
                    .order_by(col(Order.created_at), col(Order.id))
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            .scalars()
            .all()
        )
        claimed = []
        for o in rows:
            o.reconciled_at = now
            assert o.id is not None
            timed_out = o.created_at <= now - order_timeout or (
                o.expires_at is not None and o.expires_at <= now
            )
            late = now - GIVE_UP_AFTER
            overdue = o.created_at <= late - order_timeout or (
                o.expires_at is not None and o.expires_at <= late
            )
            claimed.append(
                _Claimed(o.id, o.order_no, o.provider, o.provider_ref, timed_out, overdue)
            )
    return claimed


async def _expire(db: Database, order: _Claimed, now: datetime, why: str) -> bool:
    """pending -> expired by compare-and-set; False if something else settled it first."""
    async with db.transaction() as s:
        moved = await s.execute(
            update(Order)
            .where(col(Order.id) == order.id, col(Order.status) == "pending")
            .values(status="expired")
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return False
        # The wallet part held at checkout comes back with the status change, in one commit.
        await release_holds(s, order.id, now)
        audit(s, "system", "order.expired", f"order:{order.order_no}", now, why)
    return True


def paid_notice(
    provider: str, order_no: str, provider_ref: str | None, status: CheckoutStatus
) -> WebhookNotice:
    """The notice of a payment the provider reported when asked (reconciliation, and the
    buyer's "I have paid": billing/check_now.py), with a deterministic event id, so every
    way of learning of one payment is the same event. PaymentError if it has no amount."""
    if status.amount_minor is None or status.currency is None:
        raise PaymentError(f"{provider} reported {order_no} paid without an amount")
    event = PaymentEvent(
        provider=provider,
        # The provider's own event id when it knows one (Stars: the charge id, which the
        # payment's successful_payment update carries too): the two are then one event.
        event_id=status.event_id or f"reconcile:{order_no}",
        event_type="reconcile.paid",
        kind=EventKind.PAID,
        order_no=order_no,
        amount_minor=status.amount_minor,
        currency=status.currency.upper(),
        provider_payment_id=status.provider_payment_id,
        provider_ref=provider_ref,
        subscription_id=status.subscription_id,
    )
    return WebhookNotice(event.event_id, event.event_type, event)


async def _grant(db: Database, order: _Claimed, status: CheckoutStatus, now: datetime) -> str:
    """The provider says paid: the webhook's own path, with a deterministic event id."""
    notice = paid_notice(order.provider, order.order_no, order.provider_ref, status)
    outcome = await process_notice(db, order.provider, notice, now)
    return outcome.outcome.value


async def reconcile_pending(
    db: Database,
    providers: Mapping[str, PaymentProvider],
    now: datetime,
    *,
    min_age: timedelta = timedelta(minutes=5),
    order_timeout: timedelta = timedelta(hours=1),
    limit: int = 100,
    recheck: timedelta | None = None,
    on_commit: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Re-check up to `limit` pending orders older than `min_age` (each at most once per
    `recheck`, default `min_age`); close those past `order_timeout` (or their own
    `expires_at`). Returns counts: claimed, granted, expired, open, errors, and any other
    outcome word of a grant (already_paid, mismatch, reversed, duplicate).

    `on_commit` is called when a grant committed (to wake the outbox worker).
    """
    counts: Counter[str] = Counter(
        dict.fromkeys(("claimed", "granted", "expired", "open", "errors"), 0)
    )
    claimed = await _claim(
        db,
        now,
        min_age=min_age,
        order_timeout=order_timeout,
        recheck=min_age if recheck is None else recheck,
        limit=limit,
    )
    counts["claimed"] = len(claimed)
    for order in claimed:
        provider = providers.get(order.provider)
        try:
            if provider is None or order.provider_ref is None:
                # Nothing to ask (the provider is no longer configured, or the checkout was
                # never created): only time can close it.
                if order.timed_out and await _expire(db, order, now, "timed out; no checkout"):
                    counts["expired"] += 1
                else:
                    counts["open"] += 1
                continue
            if order.timed_out:
                status = await provider.expire_checkout(order.provider_ref)
            else:
                status = await provider.fetch_status(order.provider_ref)
            if status.state == "paid":
                outcome = await _grant(db, order, status, now)
                counts[outcome] += 1
                if outcome != DUPLICATE and on_commit is not None:
                    on_commit()
            elif status.state == "expired" or order.timed_out:
                # "open" past the timeout: the provider cannot close it (a delayed payment
                # in flight). Expire it here; if that payment lands, it is still honoured.
                why = (
                    "closed at the provider"
                    if status.state == "expired"
                    else "timed out; payment still in flight at the provider"
                )
                counts["expired" if await _expire(db, order, now, why) else "settled"] += 1
            else:
                counts["open"] += 1
        except PaymentError as e:
            log.warning("reconcile %s at %s: %s", order.order_no, order.provider, e)
            counts["errors"] += 1
            why = (
                f"timed out over {GIVE_UP_AFTER.days} day ago; {order.provider} still failing: {e}"
            )
            if order.overdue and await _expire(db, order, now, why[:500]):
                counts["expired"] += 1
        except Exception:  # one bad order must not stop the rest
            log.exception("reconcile %s failed", order.order_no)
            counts["errors"] += 1
    for provider in providers.values():
        if isinstance(provider, StarsProvider):
            # Subscription payments of paid orders (renewals) are no pending order's.
            try:
                found = await reconcile_star_subscriptions(db, provider, now)
            except PaymentError as e:
                log.warning("reconcile of Stars subscription payments: %s", e)
                counts["errors"] += 1
                continue
            counts.update(found)
            if found and on_commit is not None:
                on_commit()
    return dict(counts)
