"""Telegram Stars rules: updates turned into ledger events, the pre-checkout rules, the
provider's calls and error mapping (against a fake StarsApi), and /addsub's Stars checks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from billing.errors import (
    InvalidEvent,
    MalformedEvent,
    PaymentError,
    PaymentRefused,
    WebhookRejected,
)
from billing.events import EventKind
from billing.ingest import apply_notice, process_notice, record_unusable
from billing.provider import CheckoutRequest
from billing.providers.stars_provider import StarsApiError, StarsProvider, StarTransaction
from billing.replay import ReplayStatus, replay_event
from billing.stars import (
    StarsPayment,
    complete,
    notice_from_body,
    payment_notice,
    pre_checkout_refusal,
    refund_notice,
    subscription_notice,
)
from bot.commands import ArgError, parse_plan_args
from storage.models import Membership, Order, Payment, WebhookEvent
from storage.money import Money
from tests.factories import make_order, make_shop

EXP = datetime(2026, 12, 21, 12, 0, tzinfo=UTC)


# -- events ------------------------------------------------------------------------------------


def test_a_first_payment_is_paid_under_its_charge_id():
    n = payment_notice(StarsPayment("stxtA", "GPORDER1", 250, "XTR"))
    e = n.event
    assert n.event_id == "stxtA" and e is not None
    assert (e.provider, e.kind, e.order_no, e.amount_minor, e.currency) == (
        "stars",
        EventKind.PAID,
        "GPORDER1",
        250,
        "XTR",
    )
    assert (e.provider_payment_id, e.subscription_id, e.period_end) == ("stxtA", None, None)


def test_a_subscriptions_first_payment_names_it_and_a_later_one_renews():
    first = payment_notice(StarsPayment("stxtA", "GP1", 250, "XTR", True, True, EXP)).event
    assert first is not None
    assert (first.kind, first.subscription_id, first.period_end) == (EventKind.PAID, "stxtA", EXP)
    later = payment_notice(
        StarsPayment("stxtB", "GP1", 250, "XTR", True, False, EXP + timedelta(days=30))
    ).event
    assert later is not None
    assert (later.kind, later.event_id, later.provider_payment_id) == (
        EventKind.RENEWED,
        "stxtB",
        "stxtB",
    )
    assert later.subscription_id is None  # found through the order (complete)
    assert later.period_end == EXP + timedelta(days=30) and not later.first_period


def test_a_refund_has_one_event_id_whoever_reports_it():
    ours = refund_notice("stxtA", "GP1", 250, "XTR", event_type="refund_star_payment")
    theirs = refund_notice("stxtA", "GP1", 250, "XTR")
    assert ours.event_id == theirs.event_id == "refund:stxtA"
    e = theirs.event
    assert e is not None
    assert (e.kind, e.reversal_id, e.provider_payment_id, e.reversal_amount_minor) == (
        EventKind.REFUNDED,
        "refund:stxtA",
        "stxtA",
        250,
    )


@pytest.mark.parametrize(
    ("state", "kind", "cancel"),
    [
        ("canceled", EventKind.SUBSCRIPTION_UPDATED, True),
        ("active", EventKind.SUBSCRIPTION_UPDATED, False),
        ("failed", EventKind.PAYMENT_FAILED, None),
    ],
)
def test_subscription_updates(state, kind, cancel):
    n = subscription_notice(42, 7, "GP1", state)
    assert n.event_id == "subscription:42:7"
    assert n.event is not None
    assert (n.event.kind, n.event.cancel_at_period_end, n.event.order_no) == (kind, cancel, "GP1")
    # Another bot's update 7 is another event.
    assert subscription_notice(43, 7, "GP1", state).event_id != n.event_id


def test_an_unknown_subscription_state_is_kept_unapplied():
    assert subscription_notice(42, 8, "GP1", "paused").event is None


def test_a_payload_that_is_not_an_order_number_is_invalid():
    with pytest.raises(InvalidEvent):
        payment_notice(StarsPayment("stxtA", "x" * 200, 250, "XTR"))


async def test_complete_finds_the_subscription_and_the_price_through_the_order(db, now):
    shop = await make_shop(db, now, prices=(Money(250, "XTR"),), recurring=True)
    order = await make_order(db, shop, now, provider="stars", price=Money(250, "XTR"))
    first = payment_notice(StarsPayment("stxtA", order.order_no, 250, "XTR", True, True, EXP))
    assert (await process_notice(db, "stars", first, now)).outcome.value == "granted"
    failed = subscription_notice(1, 9, order.order_no, "failed")
    async with db.session() as s:
        done = await complete(s, failed)
    assert done.event is not None
    assert (done.event.subscription_id, done.event.amount_minor, done.event.currency) == (
        "stxtA",
        250,
        "XTR",
    )
    async with db.transaction() as s:
        result = await apply_notice(s, "stars", done, now)
    assert result.outcome.value == "notified"


async def test_a_payment_applied_twice_in_update_transactions_is_stored_once(db, now):
    shop = await make_shop(db, now, prices=(Money(250, "XTR"),))
    order = await make_order(db, shop, now, provider="stars", price=Money(250, "XTR"))
    notice = payment_notice(StarsPayment("stxtA", order.order_no, 250, "XTR"))
    outcomes = []
    for _ in range(2):
        async with db.transaction() as s:
            outcomes.append((await apply_notice(s, "stars", notice, now)).outcome.value)
    assert outcomes == ["granted", "duplicate"]
    async with db.session() as s:
        assert len((await s.execute(select(Payment))).scalars().all()) == 1
        assert len((await s.execute(select(WebhookEvent))).scalars().all()) == 1
        assert len((await s.execute(select(Membership))).scalars().all()) == 1


async def test_apply_notice_leaves_nothing_when_its_transaction_rolls_back(db, now):
    shop = await make_shop(db, now, prices=(Money(250, "XTR"),))
    order = await make_order(db, shop, now, provider="stars", price=Money(250, "XTR"))
    notice = payment_notice(StarsPayment("stxtA", order.order_no, 250, "XTR"))
    async with db.session() as s:
        await apply_notice(s, "stars", notice, now)
        await s.rollback()  # the update's handler failed: Telegram sends it again
    async with db.transaction() as s:
        assert (await apply_notice(s, "stars", notice, now)).outcome.value == "granted"


# -- pre-checkout ------------------------------------------------------------------------------


async def test_pre_checkout_rules(db, now):
    shop = await make_shop(db, now, prices=(Money(250, "XTR"),))
    order = await make_order(db, shop, now, provider="stars", price=Money(250, "XTR"))
    other = await make_order(db, shop, now, provider="sandbox")
    buyer = shop.buyer.platform_user_id
    async with db.session() as s:
        assert await pre_checkout_refusal(s, order.order_no, buyer, "XTR", 250) is None
        assert await pre_checkout_refusal(s, order.order_no, buyer, "XTR", 249) == (
            "stars_amount_changed"
        )
        assert await pre_checkout_refusal(s, order.order_no, buyer, "USD", 250) == (
            "stars_amount_changed"
        )
        assert await pre_checkout_refusal(s, order.order_no, "999", "XTR", 250) == (
            "stars_order_not_yours"
        )
        assert await pre_checkout_refusal(s, "GPNOSUCH", buyer, "XTR", 250) == (
            "stars_order_unknown"
        )
        # Another provider's order is not payable with Stars.
        assert await pre_checkout_refusal(s, other.order_no, buyer, "USD", 499) == (
            "stars_order_unknown"
        )
    notice = payment_notice(StarsPayment("stxtA", order.order_no, 250, "XTR"))
    await process_notice(db, "stars", notice, now)
    async with db.session() as s:
        assert await pre_checkout_refusal(s, order.order_no, buyer, "XTR", 250) == (
            "stars_order_not_pending"
        )
        paid = (await s.execute(select(Payment).where(col(Payment.extra).is_(False)))).scalar_one()
    assert paid.provider_payment_id == "stxtA"


# -- the provider ------------------------------------------------------------------------------


@dataclass
class FakeApi:
    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail: StarsApiError | None = None
    pages: list[StarTransaction] = field(default_factory=list)

    async def _do(self, name: str, args: Any) -> None:
        self.calls.append((name, args))
        if self.fail is not None:
            raise self.fail

    async def send_invoice(self, chat_id, *, title, description, payload, amount):
        await self._do("send_invoice", (chat_id, title, payload, amount))

    async def create_invoice_link(
        self, *, title, description, payload, amount, subscription_period
    ):
        await self._do("create_invoice_link", (payload, amount, subscription_period))
        return "https://t.me/$abc"

    async def refund_star_payment(self, user_id, charge_id):
        await self._do("refund_star_payment", (user_id, charge_id))

    async def edit_user_star_subscription(self, user_id, charge_id, *, is_canceled):
        await self._do("edit_user_star_subscription", (user_id, charge_id, is_canceled))

    async def get_star_transactions(self, offset, limit):
        await self._do("get_star_transactions", (offset, limit))
        return self.pages[offset : offset + limit]


def request(**kw) -> CheckoutRequest:
    base = {
        "order_no": "GP1",
        "title": "Monthly",
        "amount_minor": 250,
        "currency": "XTR",
        "recurring": False,
        "duration_days": 30,
        "success_url": "",
        "cancel_url": "",
        "customer_ref": "5",
        "buyer_ref": "2002",
    }
    return CheckoutRequest(**{**base, **kw})


async def test_a_one_time_checkout_sends_the_invoice():
    api = FakeApi()
    p = StarsProvider(api)
    assert p.accepts("XTR") and not p.accepts("USD")
    c = await p.create_checkout(request())
    assert (c.shown, c.url, c.provider_ref) == ("invoice_sent", "", "GP1")
    assert api.calls == [("send_invoice", (2002, "Monthly", "GP1", 250))]


async def test_a_subscription_checkout_is_a_30_day_invoice_link():
    api = FakeApi()
    c = await StarsProvider(api).create_checkout(request(recurring=True))
    assert (c.shown, c.url) == ("link", "https://t.me/$abc")
    assert api.calls == [("create_invoice_link", ("GP1", 250, 2592000))]
    with pytest.raises(PaymentRefused):
        await StarsProvider(api).create_checkout(request(recurring=True, duration_days=365))


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, PaymentRefused), (429, PaymentError), (502, PaymentError), (None, PaymentError)],
)
async def test_errors_map_like_stripes(status, error):
    api = FakeApi(fail=StarsApiError(status, "Bad Request: CHAT_NOT_FOUND"))
    with pytest.raises(error) as raised:
        await StarsProvider(api).create_checkout(request())
    assert isinstance(raised.value, PaymentRefused) == (status == 400)


async def test_a_refund_already_made_is_the_state_wanted():
    api = FakeApi(fail=StarsApiError(400, "Bad Request: CHARGE_ALREADY_REFUNDED"))
    p = StarsProvider(api)
    assert await p.refund("stxtA", 250, "XTR", idempotency_key="k", buyer_ref="2002") == (
        "refund:stxtA"
    )
    api.fail = StarsApiError(400, "Bad Request: CHARGE_NOT_FOUND")
    with pytest.raises(PaymentRefused):
        await p.refund("stxtA", 250, "XTR", idempotency_key="k", buyer_ref="2002")
    notice = p.refund_notice("stxtA", 250, "XTR", "refund:stxtA", "GP1")
    assert notice.event_id == "refund:stxtA"


async def test_cancel_names_the_buyer_and_the_first_charge():
    api = FakeApi()
    p = StarsProvider(api)
    await p.cancel_subscription_at_period_end("stxtA", buyer_ref="2002")
    assert api.calls == [("edit_user_star_subscription", (2002, "stxtA", True))]
    with pytest.raises(PaymentRefused):
        await p.cancel_subscription_at_period_end("stxtA")


def tx(i: int, payload: str | None, *, incoming: bool = True, period: int | None = None):
    return StarTransaction(
        id=f"stxt{i}",
        amount=250,
        date=EXP - timedelta(minutes=i),
        incoming=incoming,
        user_id=2002,
        transaction_type="invoice_payment",
        invoice_payload=payload,
        subscription_period=period,
    )


async def test_status_pages_through_the_transactions():
    api = FakeApi(
        pages=[
            tx(1, "GPOTHER"),
            tx(2, "GPREFUNDED", incoming=False),
            tx(3, "GPX"),
            tx(2, "GPREFUNDED"),
            tx(5, "GPSUB", period=2592000),
        ]
    )
    p = StarsProvider(api, page_size=2, scan_ttl_seconds=0)
    paid = await p.fetch_status("GPSUB")
    assert (paid.state, paid.event_id, paid.provider_payment_id, paid.subscription_id) == (
        "paid",
        "stxt5",
        "stxt5",
        "stxt5",
    )
    assert [c[1] for c in api.calls] == [(0, 2), (2, 2), (4, 2)]
    assert (await p.fetch_status("GPREFUNDED")).state == "open"  # refunded already
    assert (await p.fetch_status("GPNONE")).state == "open"
    assert (await p.expire_checkout("GPNONE")).state == "expired"
    assert (await p.expire_checkout("GPX")).state == "paid"


async def test_subscription_payments_are_the_unrefunded_ones_oldest_first():
    """What reconciliation of renewals reads: subscription payments only (not one-time
    payments, not refunds, not other partners' transactions), a refunded one left out."""
    other = StarTransaction(
        id="stxtF",
        amount=500,
        date=EXP,
        incoming=False,
        user_id=None,
        transaction_type=None,
        invoice_payload=None,
    )
    api = FakeApi(
        pages=[
            tx(1, "GPSUB", period=2592000),  # the renewal (newest first)
            tx(2, "GPONCE"),
            other,  # a withdrawal: another partner, outgoing
            tx(3, "GPGONE", incoming=False, period=2592000),  # the refund of stxt3
            tx(3, "GPGONE", period=2592000),
            tx(4, "GPSUB", period=2592000),  # the subscription's first payment
        ]
    )
    p = StarsProvider(api, page_size=100, scan_ttl_seconds=0)
    assert [t.id for t in await p.subscription_payments()] == ["stxt4", "stxt1"]


def test_no_webhooks():
    p = StarsProvider(FakeApi())
    with pytest.raises(WebhookRejected):
        p.verify_webhook({}, b"{}")


# -- /addsub -----------------------------------------------------------------------------------


def test_a_stars_subscription_must_be_30_days():
    with pytest.raises(ArgError) as e:
        parse_plan_args("1 1y 250XTR", recurring=True)
    assert e.value.key == "stars_sub_period"
    with pytest.raises(ArgError) as e:
        parse_plan_args("1 30d 10001XTR", recurring=True)
    assert e.value.key == "stars_sub_too_much"
    assert parse_plan_args("1 30d 250XTR", recurring=True).duration_days == 30
    assert parse_plan_args("1 1m 4.99USD", recurring=True).duration_days == 30
    assert parse_plan_args("1 90d 250XTR", recurring=False).duration_days == 90


async def test_a_subscription_update_of_an_order_without_payment_changes_nothing(db, now):
    shop = await make_shop(db, now, prices=(Money(250, "XTR"),), recurring=True)
    order = await make_order(db, shop, now, provider="stars", price=Money(250, "XTR"))
    async with db.transaction() as s:
        done = await complete(s, subscription_notice(1, 9, order.order_no, "failed"))
        assert done.event is None
        assert (await apply_notice(s, "stars", done, now)).outcome.value == "ignored"
    async with db.session() as s:
        status = (
            await s.execute(select(col(Order.status)).where(col(Order.id) == order.id))
        ).scalar_one()
    assert status == "pending"  # still payable; reconciliation finds the lost payment


# -- kept when it cannot be applied ------------------------------------------------------------


def _paid_body(order_no: str, charge_id: str = "stxtA", amount: Any = 250) -> bytes:
    fields = {
        "currency": "XTR",
        "total_amount": amount,
        "invoice_payload": order_no,
        "telegram_payment_charge_id": charge_id,
        "provider_payment_charge_id": "",
    }
    return json.dumps({"successful_payment": fields}).encode()


def test_a_stored_message_body_reads_as_the_update_did():
    body = _paid_body("GP1")
    assert notice_from_body(body) == payment_notice(StarsPayment("stxtA", "GP1", 250, "XTR"))
    refund = json.dumps({"refunded_payment": json.loads(body)["successful_payment"]}).encode()
    assert notice_from_body(refund) == refund_notice("stxtA", "GP1", 250, "XTR")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"poll": {}}',
        b'{"successful_payment": {"currency": "XTR"}}',
        _paid_body("GP1", amount=2.5),
        _paid_body("x" * 200),
    ],
)
def test_a_body_the_ledger_cannot_hold_is_refused(body):
    with pytest.raises((MalformedEvent, InvalidEvent)):
        notice_from_body(body)


async def test_a_payment_kept_unapplied_is_applied_by_replay(db, now):
    """What the bot keeps of a Stars payment it could not apply (bot/handlers/stars.py)
    is applied later by `gatepass webhooks replay stars <event id>`, once."""
    shop = await make_shop(db, now, prices=(Money(250, "XTR"),))
    order = await make_order(db, shop, now, provider="stars", price=Money(250, "XTR"))
    async with db.transaction() as s:
        await record_unusable(
            s, "stars", "update:1:5", "successful_payment", "a bug", _paid_body(order.order_no), now
        )
    provider = StarsProvider(FakeApi())
    first = await replay_event(db, provider, "update:1:5", now)
    assert (first.status, first.detail) == (ReplayStatus.APPLIED, "granted")
    again = await replay_event(db, provider, "update:1:5", now)
    assert again.status == ReplayStatus.ALREADY_PROCESSED
    async with db.session() as s:
        assert len((await s.execute(select(Payment))).scalars().all()) == 1
        assert len((await s.execute(select(Membership))).scalars().all()) == 1
