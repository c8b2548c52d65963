"""Flow 2 through billing.ingest with the sandbox provider's real signature scheme."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from billing import payments
from billing.events import EventKind
from billing.ingest import ingest_webhook
from billing.providers.sandbox_provider import SandboxProvider
from storage.models import AuditLog, Membership, Order, Outbox, Payment, WebhookEvent
from storage.money import Money
from tests.factories import SANDBOX_SECRET, make_order, make_shop, sandbox_event


@pytest.fixture
def provider() -> SandboxProvider:
    return SandboxProvider(SANDBOX_SECRET, "http://127.0.0.1:1")


async def count(db, model, *where) -> int:
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def test_paid_event_grants_once_in_one_transaction(db, provider, now):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    headers, body = sandbox_event(order, event_id="evt_1")
    ack, outcome = await ingest_webhook(db, provider, headers, body, now)
    assert (ack.status, outcome) == (200, "granted")
    async with db.session() as s:
        o = (await s.execute(select(Order).where(col(Order.id) == order.id))).scalar_one()
        m = (await s.execute(select(Membership))).scalar_one()
        ev = (await s.execute(select(WebhookEvent))).scalar_one()
        kinds = [r.kind for r in (await s.execute(select(Outbox))).scalars()]
    assert o.status == "paid" and o.paid_at == now
    assert m.status == "active" and m.user_id == shop.buyer.id
    assert (m.expires_at - now).days == 30
    assert ev.processed_at == now and ev.error is None
    assert kinds == ["deliver_invite"]
    assert await count(db, Payment) == 1


async def test_duplicate_event_is_a_no_op(db, provider, now):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    headers, body = sandbox_event(order, event_id="evt_dup")
    for _ in range(3):
        ack, _ = await ingest_webhook(db, provider, headers, body, now)
        assert ack.status == 200
    assert await count(db, Membership) == 1
    assert await count(db, Outbox) == 1
    assert await count(db, WebhookEvent) == 1


async def test_second_event_for_a_paid_order_grants_nothing_more(db, provider, now):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    for eid in ("evt_a", "evt_b"):
        headers, body = sandbox_event(order, event_id=eid)
        ack, _ = await ingest_webhook(db, provider, headers, body, now)
        assert ack.status == 200
    async with db.session() as s:
        m = (await s.execute(select(Membership))).scalar_one()
    assert (m.expires_at - now).days == 30  # not 60
    assert await count(db, Outbox) == 1


@pytest.mark.parametrize("amount,currency", [(498, None), (None, "EUR")])
async def test_mismatch_is_recorded_and_never_granted(db, provider, now, amount, currency):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    headers, body = sandbox_event(order, amount_minor=amount, currency=currency)
    ack, outcome = await ingest_webhook(db, provider, headers, body, now)
    assert ack.status == 200 and outcome == "mismatch"
    assert await count(db, Membership) == 0
    async with db.session() as s:
        o = await s.get(Order, order.id)
        ev = (await s.execute(select(WebhookEvent))).scalar_one()
        notes = [r.payload["key"] for r in (await s.execute(select(Outbox))).scalars()]
        audit = [a.action for a in (await s.execute(select(AuditLog))).scalars()]
    assert o.status == "failed"
    assert ev.error.startswith("mismatch")
    assert sorted(notes) == ["owner_payment_mismatch", "payment_mismatch"]
    assert "payment.mismatch" in audit
    assert await count(db, Payment) == 1  # the money is on record for a refund


@pytest.mark.parametrize("tamper", ["body", "secret", "stale", "missing"])
async def test_bad_signature_is_400_and_changes_nothing(db, provider, now, tamper):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    headers, body = sandbox_event(
        order,
        secret="wrong" if tamper == "secret" else SANDBOX_SECRET,
        timestamp=int(time.time()) - 301 if tamper == "stale" else None,
    )
    if tamper == "body":
        body = body.replace(b"499", b"1")
    if tamper == "missing":
        headers = {}
    ack, outcome = await ingest_webhook(db, provider, headers, body, now)
    assert (ack.status, outcome) == (400, "rejected")
    assert await count(db, WebhookEvent) == 0
    assert await count(db, Membership) == 0


async def test_unknown_event_type_is_acknowledged_and_ignored(db, provider, now):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    headers, body = sandbox_event(order, event_type="payment.created")
    ack, outcome = await ingest_webhook(db, provider, headers, body, now)
    assert (ack.status, outcome) == (200, "ignored")
    assert await count(db, Membership) == 0


async def test_internal_failure_is_500_rolls_back_and_the_retry_grants(
    db, provider, now, monkeypatch
):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    headers, body = sandbox_event(order, event_id="evt_retry")

    async def broken(session, event, now):
        await payments.apply_paid(session, event, now)
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(payments.HANDLERS, EventKind.PAID, broken)
    ack, outcome = await ingest_webhook(db, provider, headers, body, now)
    assert (ack.status, outcome) == (500, "error")
    assert await count(db, Membership) == 0
    async with db.session() as s:
        ev = (await s.execute(select(WebhookEvent))).scalar_one()
        assert ev.processed_at is None and "disk on fire" in ev.error
        assert (await s.get(Order, order.id)).status == "pending"
    monkeypatch.undo()
    ack, outcome = await ingest_webhook(db, provider, headers, body, now)
    assert (ack.status, outcome) == (200, "granted")
    assert await count(db, Membership) == 1


async def test_bundle_grants_every_group_and_extension_adds_time(db, provider, now):
    shop = await make_shop(db, now, groups=2)
    first = await make_order(db, shop, now)
    await ingest_webhook(db, provider, *sandbox_event(first), now)
    second = await make_order(db, shop, now)
    await ingest_webhook(db, provider, *sandbox_event(second), now)
    async with db.session() as s:
        ms = (await s.execute(select(Membership))).scalars().all()
        kinds = sorted(r.kind for r in (await s.execute(select(Outbox))).scalars())
    assert len(ms) == 2 and all((m.expires_at - now).days == 60 for m in ms)
    assert kinds == ["deliver_invite", "deliver_invite", "notify", "notify"]


async def test_late_payment_on_expired_order_is_honoured(db, provider, now):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    async with db.transaction() as s:
        (await s.get(Order, order.id)).status = "expired"
    _ack, outcome = await ingest_webhook(db, provider, *sandbox_event(order), now)
    assert outcome == "granted"


async def test_event_for_unknown_order_is_recorded(db, provider, now):
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    order.order_no = "GPNOSUCH"
    ack, outcome = await ingest_webhook(db, provider, *sandbox_event(order), now)
    assert ack.status == 200 and outcome == "unknown_order"
    async with db.session() as s:
        assert (await s.execute(select(WebhookEvent))).scalar_one().error == "unknown_order"


async def test_lifetime_plan_has_no_end(db, provider, now):
    shop = await make_shop(db, now, duration_days=None, prices=(Money(9900, "USD"),))
    order = await make_order(db, shop, now, price=Money(9900, "USD"))
    await ingest_webhook(db, provider, *sandbox_event(order), now)
    async with db.session() as s:
        assert (await s.execute(select(Membership))).scalar_one().expires_at is None
