"""What the QR pay page (gatepass/pay_page.py) knows of an order: the QR payload, the
provider, when the order times out, and where it stands for the buyer: pending (the code
can be paid), paid, or expired. One small read, as the page polls it every few seconds; the
page's details (plan, groups, language) come from billing/order_view.py once. Read only."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.checkout import is_order_no
from billing.payments import PAYABLE
from storage.models import Order

PayState = Literal["pending", "paid", "expired", "closed"]

# A code paid in its last seconds reaches us after its time (the provider's notification, or
# "I have paid") and is honoured: an expired page keeps asking this long, so the buyer who
# paid sees "paid", not "expired".
LATE_PAYMENT_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True)
class PayView:
    order_no: str
    status: str  # the order's
    provider: str
    payload: str | None  # the QR code's content (Checkout.url of a shown="qr" checkout)
    expires_at: datetime | None

    def state(self, now: datetime) -> PayState:
        """paid; pending while the code can still be paid; closed when it was paid in a way
        the order could not take (failed: a wrong amount, a dispute) or refunded: the buyer
        may have paid, so "expired, buy again" would invite a second payment; expired for
        everything else (timed out, never had a code)."""
        if self.status == "paid":
            return "paid"
        if self.status not in PAYABLE:
            return "closed"
        if self.status == "pending" and self.payload and self.seconds_left(now) > 0:
            return "pending"
        return "expired"

    def final(self, now: datetime) -> bool:
        """Whether the state shown can no longer change: paid; closed for good (failed,
        refunded); never had a code; or timed out more than LATE_PAYMENT_WINDOW ago."""
        if self.status == "paid" or self.status not in PAYABLE or not self.payload:
            return True
        return self.expires_at is None or now >= self.expires_at + LATE_PAYMENT_WINDOW

    def seconds_left(self, now: datetime) -> int:
        if self.expires_at is None:
            return 0
        return max(0, math.ceil((self.expires_at - now).total_seconds()))


async def pay_view(session: AsyncSession, order_no: str) -> PayView | None:
    """None for anything that is not the number of an order of ours (its shape is checked
    before the database is asked)."""
    if not is_order_no(order_no):
        return None
    row = (
        await session.execute(
            select(
                col(Order.status),
                col(Order.provider),
                col(Order.checkout_url),
                col(Order.expires_at),
            ).where(col(Order.order_no) == order_no)
        )
    ).first()
    if row is None:
        return None
    return PayView(order_no, row[0], row[1], row[2], row[3])
