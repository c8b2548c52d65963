"""Rows for unit tests, made through the same services the bot uses."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from billing.checkout import start_checkout
from billing.ingest import ingest_webhook
from billing.provider import PaymentProvider
from billing.providers.sandbox_provider import SIGNATURE_HEADER, sign
from membership.catalog import add_plan, register_group
from storage.db import Database
from storage.models import ChatGroup, Order, Plan, User
from storage.money import Money
from storage.queries import get_or_create_user
from tests.stripe_fixtures import WEBHOOK_SECRET, event_body, sign_payload

SANDBOX_SECRET = "whsec_sandbox_test"


@dataclass
class Shop:
    owner: User
    buyer: User
    group: ChatGroup
    plan: Plan


async def make_shop(
    db: Database,
    now: datetime,
    *,
    duration_days: int | None = 30,
    prices: tuple[Money, ...] = (Money(499, "USD"),),
    invite_mode: str = "join_request",
    groups: int = 1,
    recurring: bool = False,
    refund_policy: str = "revoke",
) -> Shop:
    async with db.transaction() as s:
        owner = await get_or_create_user(s, "telegram", "1000", now, username="owner")
        owner.refund_policy = refund_policy
        buyer = await get_or_create_user(s, "telegram", "2000", now, username="buyer")
        made = [
            (
                await register_group(
                    s, owner, "telegram", f"-100{i}", f"Group {i}", now, invite_mode=invite_mode
                )
            )[0]
            for i in range(1, groups + 1)
        ]
        plan = await add_plan(
            s, owner, made, duration_days, list(prices), "Monthly", now, recurring=recurring
        )
    return Shop(owner, buyer, made[0], plan)


async def make_order(
    db: Database,
    shop: Shop,
    now: datetime,
    *,
    provider: str = "sandbox",
    price: Money = Money(499, "USD"),
) -> Order:
    async with db.transaction() as s:
        order = Order(
            order_no=f"GPTEST{secrets.token_hex(3).upper()}",
            user_id=shop.buyer.id,
            plan_id=shop.plan.id,
            provider=provider,
            amount_minor=price.amount_minor,
            currency=price.currency,
            status="pending",
            created_at=now,
            provider_ref=f"ref_{secrets.token_hex(3)}",
        )
        s.add(order)
    return order


def sandbox_event(
    order: Order,
    *,
    event_id: str | None = None,
    amount_minor: int | None = None,
    currency: str | None = None,
    event_type: str = "payment.succeeded",
    secret: str = SANDBOX_SECRET,
    timestamp: int | None = None,
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {
            "id": event_id or f"sbxevt_{secrets.token_hex(6)}",
            "type": event_type,
            "order_no": order.order_no,
            "amount_minor": order.amount_minor if amount_minor is None else amount_minor,
            "currency": currency or order.currency,
            "payment_id": f"sbxpay_{order.order_no}",
        }
    ).encode()
    return {SIGNATURE_HEADER: sign(body, secret, timestamp)}, body


# -- against the local Stripe host (sandbox/stripe_host.py) ------------------------------------


class MovableClock:
    def __init__(self, now: datetime) -> None:
        self.t = now

    def now(self) -> datetime:
        return self.t


async def start_order(
    db: Database,
    provider: PaymentProvider,
    shop: Shop,
    now: datetime,
    *,
    buyer: User | None = None,
    price: Money = Money(499, "USD"),
    timeout: timedelta = timedelta(hours=1),
) -> Order:
    """A pending order with a real checkout at the provider (billing.checkout's own path)."""
    async with db.session() as s:
        user = await s.get(User, (buyer or shop.buyer).id)
        plan = await s.get(Plan, shop.plan.id)
        assert user is not None and plan is not None
        return await start_checkout(
            s,
            provider,
            user,
            plan,
            price,
            now,
            public_url="https://gatepass.example",
            timeout=timeout,
        )


async def deliver_stripe_event(
    db: Database, provider: PaymentProvider, event: dict[str, Any], now: datetime
) -> str:
    """An event the Stripe host recorded, delivered (signed now) as Stripe would."""
    body = event_body(event)
    headers = {
        "Stripe-Signature": sign_payload(body, WEBHOOK_SECRET),
        "Content-Type": "application/json; charset=utf-8",
    }
    ack, outcome = await ingest_webhook(db, provider, headers, body, now)
    assert ack.status == 200, ack.body
    return outcome


def stripe_events(fake: Any, event_type: str) -> list[dict[str, Any]]:
    return [e for e in fake.events if e["type"] == event_type]


async def paid_subscription(
    db: Database, fake: Any, stripe: PaymentProvider, now: datetime, **shop: Any
) -> tuple[Shop, Order, str]:
    """A Stripe subscription bought and paid through the local Stripe host, its session and
    first invoice delivered: (shop, order, subscription id)."""
    made = await make_shop(db, now, recurring=True, **shop)
    order = await start_order(db, stripe, made, now)
    await fake.pay(order.provider_ref)
    for kind in ("checkout.session.completed", "invoice.paid"):
        (event,) = stripe_events(fake, kind)
        await deliver_stripe_event(db, stripe, event, now)
    return made, order, fake.sessions[order.provider_ref]["subscription"]
