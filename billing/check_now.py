""" "I have paid": the buyer's order checked with its provider at once (seed 004: an unpaid
order is checked with the provider before answering).

A payment the provider reports is applied through exactly reconciliation's path
(billing.reconcile.paid_notice: the deterministic event id `reconcile:<order_no>`, or the
provider's own; billing.ingest.apply_notice: dedupe, compare-and-set on the order, grant),
so the webhook that arrives afterwards, or a reconciliation run, finds the work done.

It runs inside the Telegram update's session (bot/middlewares.py): before the provider is
asked, the session's transaction is rolled back (nothing was written in it but the update's
claim and the sender's user row, which the middleware claims and a next update writes
again), so no transaction (on SQLite: no write lock) is held across the network call, and
nothing of the update is committed yet: a crash while the provider is asked leaves the
update to Telegram's next delivery (a commit here would have marked it applied, and the
press would never be answered). The grant is then applied in the update's own transaction,
which the middleware commits together with the update's claim and the reply, and then wakes
the outbox that delivers the invite. The same design as a Stars payment
(bot/handlers/stars.py).

Nothing here changes anything but a grant: an order the provider calls closed, or one past
its time, is left to reconciliation to mark expired.

One order is asked at most once per ASK_EVERY (per process): a provider rate-limits its
query API per merchant, so every buyer's button and reconciliation share one budget, and a
buyer tapping away (or a client replaying the button's data in a loop) must not spend it or
keep our connections busy. A press in between is told to wait a few seconds: the press
before it may still be asking, and may find the payment, so "not paid" would be a guess.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.checkout import is_order_no
from billing.errors import PaymentError
from billing.ingest import apply_notice
from billing.payments import PAYABLE, Outcome
from billing.provider import PaymentProvider
from billing.reconcile import paid_notice
from storage.models import Order

log = logging.getLogger(__name__)

# The buyer is waiting on a spinner: a provider slower than this is "try again".
CHECK_TIMEOUT = 8.0
# At most one question to the provider per order this often (see the module's docstring).
ASK_EVERY = timedelta(seconds=3)


class Check(StrEnum):
    PAID_NOW = "paid_now"  # the provider said paid; granted now (the invite is on its way)
    ALREADY_PAID = "already_paid"  # paid before (webhook, reconciliation, an earlier press)
    STILL_OPEN = "still_open"  # not paid yet; the QR code still works
    EXPIRED = "expired"  # past its time or closed at the provider: cannot be paid any more
    CLOSED = "closed"  # failed or refunded: nothing to pay
    REVIEW = "review"  # money reported that the order cannot take (amount mismatch, ...)
    NOT_YOURS = "not_yours"
    UNKNOWN = "unknown"  # no such order (or not the shape of an order number)
    PROVIDER_ERROR = "provider_error"  # the provider did not answer (in time)
    TOO_SOON = "too_soon"  # asked a moment ago (maybe still asking): press again shortly


@dataclass(frozen=True)
class PaidCheck:
    result: Check
    order_no: str
    expires_at: datetime | None = None
    topup: bool = False  # a top-up's payment credits the wallet (no invite follows)

    def minutes_left(self, now: datetime) -> int:
        return minutes_left(self.expires_at, now)


def minutes_left(expires_at: datetime | None, now: datetime) -> int:
    """Whole minutes until an order times out, rounded up (0 once it has, or without one)."""
    if expires_at is None:
        return 0
    return max(0, math.ceil((expires_at - now).total_seconds() / 60))


class _Pace:
    """When each order was last asked at its provider; a question in flight counts as asked
    until it has been answered and ASK_EVERY has passed since it started."""

    def __init__(self, every: timedelta, keep: int = 10_000) -> None:
        self.every, self.keep = every, keep
        self._asked: dict[str, datetime] = {}
        self._in_flight: set[str] = set()

    def start(self, order_no: str, now: datetime) -> bool:
        """Whether the provider may be asked about `order_no` now (then it is noted)."""
        last = self._asked.get(order_no)
        if order_no in self._in_flight or (
            last is not None and timedelta(0) <= now - last < self.every
        ):
            return False
        if len(self._asked) >= self.keep:  # forget the old ones: memory stays bounded
            self._asked = {k: v for k, v in self._asked.items() if now - v < self.every}
        self._asked[order_no] = now
        self._in_flight.add(order_no)
        return True

    def done(self, order_no: str) -> None:
        self._in_flight.discard(order_no)


_PACE = _Pace(ASK_EVERY)


async def _order(session: AsyncSession, order_no: str) -> Order | None:
    return (
        await session.execute(select(Order).where(col(Order.order_no) == order_no))
    ).scalar_one_or_none()


async def check_now(
    session: AsyncSession,
    providers: Mapping[str, PaymentProvider],
    order_no: str,
    user_id: int,
    now: datetime,
    *,
    timeout: float = CHECK_TIMEOUT,
) -> PaidCheck:
    """Ask the provider about `user_id`'s order `order_no` and grant it if paid (in
    `session`'s transaction: the caller commits). Only the order's buyer may ask."""
    if not is_order_no(order_no):
        return PaidCheck(Check.UNKNOWN, order_no)
    order = await _order(session, order_no)
    if order is None:
        return PaidCheck(Check.UNKNOWN, order_no)
    if order.user_id != user_id:
        return PaidCheck(Check.NOT_YOURS, order_no)
    expires_at, topup = order.expires_at, order.kind == "topup"
    if order.status == "paid":
        return PaidCheck(Check.ALREADY_PAID, order_no, expires_at, topup)
    if order.status not in PAYABLE:
        return PaidCheck(Check.CLOSED, order_no, expires_at)
    timed_out = order.status != "pending" or (expires_at is not None and expires_at <= now)
    provider = providers.get(order.provider)
    ref, provider_name = order.provider_ref, order.provider
    if ref is None:  # the checkout was never made: nothing can have been paid
        return PaidCheck(Check.EXPIRED if timed_out else Check.STILL_OPEN, order_no, expires_at)
    if provider is None:
        log.warning("paid check of %s: provider %s is not configured", order_no, provider_name)
        return PaidCheck(Check.PROVIDER_ERROR, order_no, expires_at)
    if not _PACE.start(order_no, now):
        log.info("paid check of %s: asked its provider a moment ago", order_no)
        return PaidCheck(Check.TOO_SOON, order_no, expires_at)
    # Even an order past its time is asked about: a payment that landed is honoured.
    # No transaction stays open across the call, and nothing of the update is committed
    # before it (see the module's docstring).
    try:
        await session.rollback()
        status = await asyncio.wait_for(provider.fetch_status(ref), timeout)
    except (PaymentError, TimeoutError) as e:
        log.warning("paid check of %s at %s: %s", order_no, provider_name, e or "timed out")
        return PaidCheck(Check.PROVIDER_ERROR, order_no, expires_at)
    finally:
        _PACE.done(order_no)
    if status.state == "open":
        return PaidCheck(Check.EXPIRED if timed_out else Check.STILL_OPEN, order_no, expires_at)
    if status.state == "expired":
        return PaidCheck(Check.EXPIRED, order_no, expires_at)
    try:
        notice = paid_notice(provider_name, order_no, ref, status)
    except PaymentError as e:
        log.warning("paid check of %s: %s", order_no, e)
        return PaidCheck(Check.PROVIDER_ERROR, order_no, expires_at)
    result = await apply_notice(session, provider_name, notice, now)
    if result.outcome in (Outcome.GRANTED, Outcome.RENEWED):
        return PaidCheck(Check.PAID_NOW, order_no, expires_at, topup)
    # A duplicate (an earlier press, a webhook first) or anything else: what counts is
    # where the order stands now.
    await session.refresh(order, ["status"])
    if order.status == "paid":
        return PaidCheck(Check.ALREADY_PAID, order_no, expires_at, topup)
    log.warning("paid check of %s: %s", order_no, result.error or result.outcome.value)
    return PaidCheck(Check.REVIEW, order_no, expires_at)
