"""`refund_payment` (billing/provider_calls.py) for a provider that sends no refund webhook:
after its refund call succeeds, the outbox applies the provider's RefundSettler notice through
the webhook path. A test double implements the two protocols (this file only); the order is
refunded once, access follows the owner's policy, and the buyer and the owner hear once, even
when the outbox runs the row again after the call succeeded."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col

from billing.errors import PaymentRefused
from billing.events import EventKind, PaymentEvent, WebhookNotice
from billing.ingest import process_notice
from billing.order_refunds import request_order_refund
from billing.provider import Refunder, RefundSettler
from scheduler.outbox import OutboxWorker
from storage.models import Membership, Order, Outbox, Payment, User, WebhookEvent
from storage.outbox import ClaimedRow
from tests.factories import MovableClock, make_order, make_shop
from tests.unit.test_ledger_rules import NoChats, notes, rows


class SettlingPay:
    """A provider that refunds through its API and reports nothing back (as Stars)."""

    name = "fakepay"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str, str, str]] = []
        self.refused: str | None = None

    async def refund(
        self,
        payment_id: str,
        amount_minor: int,
        currency: str,
        *,
        idempotency_key: str,
        reason: str = "duplicate",
        buyer_ref: str = "",
    ) -> str:
        self.calls.append((payment_id, amount_minor, currency, idempotency_key, buyer_ref))
        if self.refused:
            raise PaymentRefused(self.refused)
        return f"fprf_{idempotency_key}"  # one refund per key, as the protocol requires

    def refund_notice(
        self, payment_id: str, amount_minor: int, currency: str, refund_id: str, order_no: str
    ) -> WebhookNotice:
        event = PaymentEvent(
            provider=self.name,
            event_id=f"refund:{refund_id}",
            event_type="refund",
            kind=EventKind.REFUNDED,
            order_no=order_no,
            amount_minor=amount_minor,
            currency=currency,
            provider_payment_id=payment_id,
            reversal_id=refund_id,
            reversal_amount_minor=amount_minor,
        )
        return WebhookNotice(event.event_id, event.event_type, event)


async def paid(db, now: datetime, policy: str):
    shop = await make_shop(db, now, refund_policy=policy)
    order = await make_order(db, shop, now, provider="fakepay")
    event = PaymentEvent(
        provider="fakepay",
        event_id=f"paid:{order.order_no}",
        event_type="paid",
        kind=EventKind.PAID,
        order_no=order.order_no,
        amount_minor=499,
        currency="USD",
        provider_payment_id=f"fpch_{order.order_no}",
    )
    notice = WebhookNotice(event.event_id, event.event_type, event)
    assert str(await process_notice(db, "fakepay", notice, now)) == "granted"
    return shop, order


async def run(db, provider: SettlingPay | None, now: datetime) -> list[Outbox]:
    worker = OutboxWorker(
        db,
        {"telegram": NoChats()},
        MovableClock(now),
        invite_ttl=timedelta(hours=1),
        providers={"fakepay": provider} if provider else {"other": SettlingPay()},
    )
    for row in await rows(
        db, Outbox, col(Outbox.kind) == "refund_payment", col(Outbox.status) == "pending"
    ):
        await worker._process(ClaimedRow(row.id, row.kind, row.platform, row.payload, row.attempts))
    return await rows(db, Outbox, col(Outbox.kind) == "refund_payment")


async def ask(db, shop, order, now):
    async with db.transaction() as s:
        owner = await s.get(User, shop.owner.id)
        return await request_order_refund(s, owner, order.order_no, now, refundable={"fakepay"})


def test_the_double_is_a_refunder_and_a_settler():
    assert isinstance(SettlingPay(), Refunder) and isinstance(SettlingPay(), RefundSettler)


@pytest.mark.parametrize(
    ("policy", "status", "buyer_key"),
    [("revoke", "revoked", "buyer_refund_ended"), ("keep", "active", "buyer_refund_kept")],
)
async def test_settled_once_even_when_the_outbox_runs_the_row_again(
    db, now, policy, status, buyer_key
):
    shop, order = await paid(db, now, policy)
    provider = SettlingPay()
    await ask(db, shop, order, now)
    (row,) = await run(db, provider, now)
    assert row.status == "done"
    key = f"gatepass-refund-order-fakepay-{order.order_no}-1"
    assert provider.calls == [
        (f"fpch_{order.order_no}", 499, "USD", key, shop.buyer.platform_user_id)
    ]
    # The lease ran out after the call succeeded: the row runs again, the same key asks the
    # same refund, and its notice is the same event, so nothing is applied twice.
    async with db.transaction() as s:
        await s.execute(update(Outbox).where(col(Outbox.id) == row.id).values(status="pending"))
    (row,) = await run(db, provider, now)
    assert row.status == "done" and len(provider.calls) == 2
    assert {c[3] for c in provider.calls} == {key}
    (refund,) = await rows(db, Payment, col(Payment.kind) == "refund")
    assert (refund.amount_minor, refund.provider_payment_id) == (499, f"fprf_{key}")
    (event,) = await rows(db, WebhookEvent, col(WebhookEvent.event_type) == "refund")
    assert event.error is None
    (o,) = await rows(db, Order)
    assert o.status == "refunded"
    (m,) = await rows(db, Membership)
    assert (m.status, m.auto_renew) == (status, False)
    outbox = await rows(db, Outbox)
    assert sorted(notes(outbox)) == sorted([buyer_key, "owner_refund"])
    buyer_note = next(r for r in outbox if r.payload.get("key") == buyer_key)
    assert buyer_note.payload["user_id"] == shop.buyer.platform_user_id
    assert buyer_note.payload["params"]["amount"] == "4.99 USD"
    assert [r.kind for r in outbox].count("remove_member") == (policy == "revoke")


async def test_a_refusal_is_told_and_settles_nothing(db, now):
    shop, order = await paid(db, now, "revoke")
    provider = SettlingPay()
    provider.refused = "fakepay: payment too old to refund"
    await ask(db, shop, order, now)
    (row,) = await run(db, provider, now)
    assert row.status == "failed" and "too old" in (row.last_error or "")
    assert await rows(db, Payment, col(Payment.kind) == "refund") == []
    assert notes(await rows(db, Outbox)) == ["owner_refund_failed"]
    (charge,) = await rows(db, Payment, col(Payment.kind) == "charge")
    assert charge.refund_requested_at is None  # the owner may ask again
    (m,) = await rows(db, Membership)
    assert m.status == "active"


async def test_a_provider_gone_from_the_config_is_told_and_may_be_asked_again(db, now):
    shop, order = await paid(db, now, "revoke")
    await ask(db, shop, order, now)
    (row,) = await run(db, None, now)  # restarted without the provider meanwhile
    assert row.status == "failed" and "not configured" in (row.last_error or "")
    assert notes(await rows(db, Outbox)) == ["owner_refund_failed"]
    (charge,) = await rows(db, Payment, col(Payment.kind) == "charge")
    assert charge.refund_requested_at is None
    asked = await ask(db, shop, order, now)  # a new request, not "requested already"
    assert asked.order_no == order.order_no
