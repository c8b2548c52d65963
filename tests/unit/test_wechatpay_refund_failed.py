"""A WeChat Pay refund that the refund call accepted (PROCESSING) and that then failed
(REFUND.ABNORMAL / REFUND.CLOSED: no money moved). Nothing but that notification ever says
so: the owner must hear it and be able to ask again, instead of /refund answering
"requested already" for good."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from billing.ingest import ingest_webhook
from billing.order_refunds import request_order_refund
from storage.models import Order, Outbox, Payment
from tests.unit.test_wechatpay_ledger import PRICE, Story, _orders, _shop
from tests.unit.test_wechatpay_webhooks import (
    envelope,
    headers_for,
    make_provider,
    refund,
    transaction,
)

TID = "4200000000000000000000000777"


async def _paid_order(db: Any, now: Any, tmp_path: Path) -> tuple[Any, Any, Order]:
    provider = make_provider(tmp_path)
    owner, plan = await _shop(db, now)
    (order,) = await _orders(db, plan, [Story(False, PRICE, (), False)], now)
    body = envelope(
        "TRANSACTION.SUCCESS", transaction(out_trade_no=order.order_no, transaction_id=TID)
    )
    ack, outcome = await ingest_webhook(db, provider, headers_for(body), body, now)
    assert (ack.status, outcome) == (204, "granted")
    return provider, owner, order


async def _charge(db: Any, order: Order) -> Payment:
    async with db.session() as s:
        return (
            await s.execute(
                select(Payment).where(
                    col(Payment.order_id) == order.id, col(Payment.kind) == "charge"
                )
            )
        ).scalar_one()


@pytest.mark.parametrize("event_type", ["REFUND.ABNORMAL", "REFUND.CLOSED"])
async def test_a_refund_that_failed_after_processing_can_be_asked_again(
    db, now, tmp_path, event_type
):
    provider, owner, order = await _paid_order(db, now, tmp_path)
    async with db.transaction() as s:
        await request_order_refund(s, owner, order.order_no, now, refundable={"wechatpay"})
    assert (await _charge(db, order)).refund_requested_at is not None

    status = event_type.split(".")[1]
    body = envelope(
        event_type,
        refund(status, out_trade_no=order.order_no, transaction_id=TID),
        kind="refund",
    )
    ack, _ = await ingest_webhook(db, provider, headers_for(body), body, now)
    assert ack.status == 204

    # No money moved: nothing in the ledger, the charge is no longer "requested".
    charge = await _charge(db, order)
    assert charge.refund_requested_at is None
    async with db.session() as s:
        kinds = list(
            (
                await s.execute(select(col(Payment.kind)).where(col(Payment.order_id) == order.id))
            ).scalars()
        )
        notes = [
            o.payload
            for o in (await s.execute(select(Outbox).where(col(Outbox.kind) == "notify"))).scalars()
            if o.payload.get("key") == "owner_refund_failed"
            and o.payload["params"]["order_no"] == order.order_no
        ]
        got = await s.get(Order, order.id)
    assert kinds == ["charge"] and got is not None and got.status == "paid"
    # The owner hears it once, naming the order and the money.
    (note,) = notes
    assert note["user_id"] == owner.platform_user_id and note["params"]["amount"] == "9.90 CNY"
    # A duplicate of the notification changes nothing more.
    ack, outcome = await ingest_webhook(db, provider, headers_for(body), body, now)
    assert (ack.status, outcome) == (204, "duplicate")

    # The owner may ask again: a new request (a new out_refund_no) is queued.
    async with db.transaction() as s:
        asked = await request_order_refund(s, owner, order.order_no, now, refundable={"wechatpay"})
    assert asked.calls == 1
    await provider.close()
