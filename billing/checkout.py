"""Starting a purchase: a pending order, then a checkout at the provider."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from billing.errors import PaymentError
from billing.provider import CheckoutRequest, CheckoutShown, PaymentProvider
from storage.models import Order, Plan, User, stored_id
from storage.money import Money
from storage.queries import audit

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O/1/I: order numbers get read aloud
_ORDER_NO_LENGTH = 10


def new_order_no() -> str:
    return "GP" + "".join(secrets.choice(_ALPHABET) for _ in range(_ORDER_NO_LENGTH))


def is_order_no(text: str) -> bool:
    """Whether `text` has the shape of an order number we issue: checked before a URL or a
    button's data ever reaches the database."""
    return (
        len(text) == 2 + _ORDER_NO_LENGTH
        and text.startswith("GP")
        and all(c in _ALPHABET for c in text[2:])
    )


@dataclass(frozen=True)
class StartedCheckout:
    order: Order
    # "link": show order.checkout_url as the pay button; "invoice_sent": the provider put
    # the invoice into the buyer's chat already (Telegram Stars), there is no link.
    shown: CheckoutShown


async def start_checkout(
    session: AsyncSession,
    provider: PaymentProvider,
    user: User,
    plan: Plan,
    price: Money,
    now: datetime,
    *,
    public_url: str,
    timeout: timedelta,
) -> Order:
    """open_checkout's order."""
    started = await open_checkout(
        session, provider, user, plan, price, now, public_url=public_url, timeout=timeout
    )
    return started.order


async def open_checkout(
    session: AsyncSession,
    provider: PaymentProvider,
    user: User,
    plan: Plan,
    price: Money,
    now: datetime,
    *,
    public_url: str,
    timeout: timedelta,
) -> StartedCheckout:
    """Create the pending order for `plan` and its checkout (open_order_checkout)."""
    if not provider.accepts(price.currency):
        raise PaymentError(f"{provider.name} does not accept {price.currency}")
    order = Order(
        order_no=new_order_no(),
        user_id=stored_id(user),
        kind="plan",
        plan_id=stored_id(plan),
        provider=provider.name,
        amount_minor=price.amount_minor,
        currency=price.currency,
        status="pending",
        created_at=now,
        expires_at=now + timeout,
    )
    return await open_order_checkout(
        session,
        provider,
        user,
        order,
        Bought(plan.title, plan.recurring, plan.duration_days, {"plan_id": str(plan.id)}),
        now,
        public_url=public_url,
    )


@dataclass(frozen=True)
class Bought:
    """What an order buys, as the provider's checkout shows it: a plan or a top-up."""

    title: str
    recurring: bool = False
    duration_days: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def checkout_request(order: Order, bought: Bought, user: User, public_url: str) -> CheckoutRequest:
    """What the provider is asked to charge for `order`: its `amount_minor` (the price less
    any wallet part), with our return pages and the order number in its metadata."""
    return CheckoutRequest(
        order_no=order.order_no,
        title=bought.title,
        amount_minor=order.amount_minor,
        currency=order.currency,
        recurring=bought.recurring,
        duration_days=bought.duration_days,
        success_url=f"{public_url}/paid/{order.order_no}",
        cancel_url=f"{public_url}/cancelled/{order.order_no}",
        customer_ref=str(user.id),
        metadata={"order_no": order.order_no, **bought.metadata},
        buyer_ref=user.platform_user_id,
        expires_at=order.expires_at,
    )


async def open_order_checkout(
    session: AsyncSession,
    provider: PaymentProvider,
    user: User,
    order: Order,
    bought: Bought,
    now: datetime,
    *,
    public_url: str,
) -> StartedCheckout:
    """Store the new pending `order` and open its checkout; commits twice on purpose.

    The order is committed BEFORE the provider is asked, so a webhook can never arrive for
    an order we do not have; a provider failure leaves the order `failed`, on record.
    """
    price = Money(order.amount_minor, order.currency)
    session.add(order)
    audit(
        session,
        f"user:{user.id}",
        "order.create",
        f"order:{order.order_no}",
        now,
        f"{bought.title}; {price}; {provider.name}",
    )
    await session.commit()
    try:
        checkout = await provider.create_checkout(checkout_request(order, bought, user, public_url))
    except PaymentError as e:
        order.status = "failed"
        audit(session, "system", "order.checkout_failed", f"order:{order.order_no}", now, str(e))
        await session.commit()
        raise
    order.provider_ref, order.checkout_url = checkout.provider_ref, checkout.url or None
    await session.commit()
    return StartedCheckout(order, checkout.shown)
