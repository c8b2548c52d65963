"""What the QR pay page (gatepass/pay_page.py) shows of an order: its return-page view
(billing/order_view.py) plus the QR payload, the provider and when the order times out,
and where it stands for the buyer: pending (the code can be paid), paid, or expired.
Read only: the page never changes anything."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.checkout import is_order_no
from billing.order_view import OrderView, order_view
from storage.models import Order

PayState = Literal["pending", "paid", "expired"]


@dataclass(frozen=True)
class PayView:
    order: OrderView
    provider: str
    payload: str | None  # the QR code's content (Checkout.url of a shown="qr" checkout)
    expires_at: datetime | None

    def state(self, now: datetime) -> PayState:
        """paid; pending while the code can still be paid; expired for everything else
        (timed out, closed, failed, refunded)."""
        if self.order.status == "paid":
            return "paid"
        if self.order.status == "pending" and self.payload and self.seconds_left(now) > 0:
            return "pending"
        return "expired"

    def seconds_left(self, now: datetime) -> int:
        if self.expires_at is None:
            return 0
        return max(0, math.ceil((self.expires_at - now).total_seconds()))


async def pay_view(session: AsyncSession, order_no: str) -> PayView | None:
    """None for anything that is not the number of an order of ours (checked before the
    database is asked)."""
    if not is_order_no(order_no):
        return None
    view = await order_view(session, order_no)
    if view is None:
        return None
    row = (
        await session.execute(
            select(col(Order.provider), col(Order.checkout_url), col(Order.expires_at)).where(
                col(Order.order_no) == order_no
            )
        )
    ).one()
    return PayView(view, row[0], row[1], row[2])
