"""AlipayProvider against the local Alipay gateway (sandbox/alipay_host.py), both signing for
real with RSA keys generated at start: requests signed as the gateway requires them, answers
believed only when their signature holds, notifications verified (every way they can fail),
and the trade's life: precreate, query, close, refund."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest

from billing.errors import PaymentError, PaymentRefused, WebhookRejected
from billing.events import EventKind
from billing.provider import (
    CheckoutRequest,
    QrPaymentProvider,
    Refunder,
    RefundSettler,
    WebhookRefusal,
)
from billing.providers.alipay_provider import AlipayProvider, out_request_no
from sandbox.alipay_host import (
    FakeAlipay,
    new_key,
    private_pem,
    public_pem,
    rsa2_sign,
    signed_notification,
)
from sandbox.alipay_trades import Refusal
from storage.clock import MovableClock

PUBLIC_URL = "https://gatepass.example"


@dataclass
class Pair:
    host: FakeAlipay
    provider: AlipayProvider
    section: dict[str, str]


def provider_for(section: dict[str, str], **override: str) -> AlipayProvider:
    s = {**section, **override}
    return AlipayProvider(
        s["app_id"],
        Path(s["app_private_key_path"]).read_text(),
        Path(s["alipay_public_key_path"]).read_text(),
        s["gateway"],
        PUBLIC_URL,
    )


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    host = FakeAlipay(clock=MovableClock())
    section = await host.start_for(PUBLIC_URL)
    provider = provider_for(section)
    try:
        yield Pair(host, provider, section)
    finally:
        await provider.close()
        await host.stop()


def request(order_no: str = "GPTESTORDER1", amount: int = 990, **kw) -> CheckoutRequest:
    expires = kw.pop("expires_at", datetime.now(UTC) + timedelta(hours=1))
    return CheckoutRequest(
        order_no=order_no,
        title=kw.pop("title", "月卡 Monthly"),
        amount_minor=amount,
        currency=kw.pop("currency", "CNY"),
        recurring=kw.pop("recurring", False),
        duration_days=30,
        success_url="",
        cancel_url="",
        customer_ref="1",
        expires_at=expires,
    )


def test_it_is_a_qr_provider_that_refunds_and_settles_and_refuses_in_alipay_shape(pair: Pair):
    p = pair.provider
    assert isinstance(p, QrPaymentProvider) and p.scan_app == "alipay" and p.name == "alipay"
    assert isinstance(p, Refunder) and isinstance(p, RefundSettler)
    assert isinstance(p, WebhookRefusal)
    assert p.accepts("CNY") and p.accepts("cny") and not p.accepts("USD")
    ack = p.ack()
    assert (ack.status, ack.body, ack.content_type) == (200, b"success", "text/plain")
    for status in (400, 500):
        assert p.refuse(status, "why").status == status and p.refuse(status, "x").body == b"fail"


# -- requests --------------------------------------------------------------------------------


async def test_precreate_is_signed_and_carries_what_alipay_requires(pair: Pair):
    at = datetime(2030, 5, 1, 16, 30, tzinfo=UTC)
    co = await pair.provider.create_checkout(request(expires_at=at))
    assert co.shown == "qr" and co.provider_ref == "GPTESTORDER1"
    assert co.url.startswith("https://qr.alipay.com/")
    (params,) = pair.host.requests  # the host verified its RSA2 signature
    assert params["method"] == "alipay.trade.precreate" and params["sign_type"] == "RSA2"
    assert params["charset"] == "utf-8" and params["app_id"] == pair.section["app_id"]
    assert params["notify_url"] == f"{PUBLIC_URL}/webhooks/alipay"
    assert json.loads(params["biz_content"]) == {
        "out_trade_no": "GPTESTORDER1",
        "total_amount": "9.90",
        "subject": "月卡 Monthly",
        "time_expire": "2030-05-02 00:30:00",  # Beijing time
    }
    # The same order again: the same code.
    assert (await pair.provider.create_checkout(request(expires_at=at))).url == co.url


async def test_checkouts_alipay_cannot_make_are_refused(pair: Pair):
    with pytest.raises(PaymentRefused, match="USD"):
        await pair.provider.create_checkout(request(currency="USD"))
    with pytest.raises(PaymentRefused, match="subscription"):
        await pair.provider.create_checkout(request(recurring=True))
    await pair.provider.create_checkout(request())
    # The same order number with another amount: Alipay's own refusal, one line.
    with pytest.raises(PaymentRefused, match=r"ACQ\.CONTEXT_INCONSISTENT") as err:
        await pair.provider.create_checkout(request(amount=1990))
    assert "\n" not in str(err.value)
    assert pair.host.requests and len(pair.host.requests) == 2  # refused ones never left


async def test_the_gateway_refuses_a_wrong_key_and_an_unknown_app(pair: Pair):
    other = Path(pair.section["app_private_key_path"]).with_name("other.pem")
    other.write_text(private_pem(new_key()))
    wrong_key = provider_for(pair.section, app_private_key_path=str(other))
    unknown_app = provider_for(pair.section, app_id="2021000199999999")
    try:
        with pytest.raises(PaymentError, match=r"isv\.invalid-signature"):
            await wrong_key.create_checkout(request())
        with pytest.raises(PaymentError, match=r"isv\.invalid-app-id"):
            await unknown_app.fetch_status("GPTESTORDER1")
        with pytest.raises(PaymentError, match=r"isv\.invalid-signature"):
            await wrong_key.check_keys()
    finally:
        await wrong_key.close()
        await unknown_app.close()
    assert pair.host.requests == []  # nothing was done for them
    assert "accepted" in await pair.provider.check_keys()


# -- answers ---------------------------------------------------------------------------------


def answer(host: FakeAlipay, key: str, content: str, *, sign_with=None) -> str:
    sign = rsa2_sign(sign_with or host.alipay_key, content)
    return f'{{"{key}":{content},"sign":"{sign}"}}'


def test_an_answer_is_believed_only_with_alipays_signature(pair: Pair):
    p, key = pair.provider, "alipay_trade_query_response"
    body = '{"code":"10000","msg":"Success","trade_status":"TRADE_SUCCESS","total_amount":"9.90"}'
    assert p.verify_answer("alipay.trade.query", answer(pair.host, key, body)).ok
    # Spacing and key order as Alipay wrote them: verified on the raw text, not re-serialized.
    spaced = body.replace(",", ", ")
    assert p.verify_answer("alipay.trade.query", answer(pair.host, key, spaced)).ok
    tampered = answer(pair.host, key, body).replace("9.90", "0.01")
    with pytest.raises(PaymentError, match="does not verify"):
        p.verify_answer("alipay.trade.query", tampered)
    with pytest.raises(PaymentError, match="does not verify"):
        p.verify_answer("alipay.trade.query", answer(pair.host, key, body, sign_with=new_key()))
    with pytest.raises(PaymentError, match="unsigned"):
        p.verify_answer("alipay.trade.query", f'{{"{key}":{body}}}')
    with pytest.raises(PaymentError, match="does not verify"):
        p.verify_answer("alipay.trade.query", f'{{"{key}":{body},"sign":"!!notbase64"}}')
    with pytest.raises(PaymentError, match="no alipay_trade_query_response"):
        p.verify_answer("alipay.trade.query", answer(pair.host, "other_response", body))
    for junk in ("not json", "[1]"):
        with pytest.raises(PaymentError):
            p.verify_answer("alipay.trade.query", junk)


# -- notifications ---------------------------------------------------------------------------


def paid_fields(host: FakeAlipay, **over: str) -> dict[str, str]:
    return {
        "notify_id": "n1",
        "notify_type": "trade_status_sync",
        "notify_time": "2026-12-01 08:00:00",
        "app_id": host.app_id,
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": "2026120122001400000000000001",
        "out_trade_no": "GPTESTORDER1",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "9.90",
        "subject": "月卡",
        **over,
    }


def test_a_signed_notification_verifies_and_parses(pair: Pair):
    body = signed_notification(pair.host.alipay_key, paid_fields(pair.host))
    notice = pair.provider.parse_webhook({}, body)
    assert notice.event is not None and notice.event.kind is EventKind.PAID


def resigned(body: bytes, **change: str) -> bytes:
    fields = dict(parse_qsl(body.decode()))
    return urlencode({**fields, **change}).encode()


@pytest.mark.parametrize(
    ("make", "why"),
    [
        # a field changed after signing
        (lambda h: resigned(signed_notification(h.alipay_key, paid_fields(h)), total_amount="0.01"),
         "bad Alipay signature"),
        # signed with a key that is not Alipay's
        (lambda h: signed_notification(new_key(), paid_fields(h)), "bad Alipay signature"),
        # Alipay's signature, but for another app
        (lambda h: signed_notification(h.alipay_key, paid_fields(h, app_id="2021000199999999")),
         "app_id"),
        # no sign / empty sign / another sign type / a sign that is not base64
        (lambda h: urlencode(paid_fields(h)).encode(), "no sign"),
        (lambda h: resigned(signed_notification(h.alipay_key, paid_fields(h)), sign=""), "no sign"),
        (lambda h: resigned(signed_notification(h.alipay_key, paid_fields(h)), sign_type="RSA"),
         "RSA2"),
        (lambda h: resigned(signed_notification(h.alipay_key, paid_fields(h)), sign="@@@"),
         "bad Alipay signature"),
        # a field added after signing
        (lambda h: resigned(signed_notification(h.alipay_key, paid_fields(h)), refund_fee="9.90"),
         "bad Alipay signature"),
        # GBK, which we never ask for
        (lambda h: signed_notification(h.alipay_key, paid_fields(h, charset="gbk")), "charset"),
        (lambda h: b"\xff\xfe", "UTF-8 form"),
    ],
)  # fmt: skip
def test_notifications_that_fail_verification_are_rejected(pair: Pair, make, why: str):
    with pytest.raises(WebhookRejected, match=why):
        pair.provider.verify_webhook({}, make(pair.host))


# -- the trade's life ------------------------------------------------------------------------


async def test_query_open_before_and_after_scanning_then_paid(pair: Pair):
    p, h = pair.provider, pair.host
    co = await p.create_checkout(request())
    assert await p.fetch_status(co.provider_ref) == "open"  # ACQ.TRADE_NOT_EXIST: not an error
    h.scan(qr_code=co.url)
    assert await p.fetch_status(co.provider_ref) == "open"  # WAIT_BUYER_PAY
    trade_no = h.pay(qr_code=co.url)
    status = await p.fetch_status(co.provider_ref)
    assert (status.state, status.amount_minor, status.currency) == ("paid", 990, "CNY")
    assert status.provider_payment_id == trade_no
    h.finish(co.provider_ref)
    assert await p.fetch_status(co.provider_ref) == "paid"
    with pytest.raises(Refusal, match="TRADE_HAS_SUCCESS"):
        h.pay(co.provider_ref)  # paid once only


async def test_close_never_scanned_then_the_code_dies_at_time_expire(pair: Pair):
    p, h = pair.provider, pair.host
    co = await p.create_checkout(request(expires_at=datetime.now(UTC) + timedelta(minutes=30)))
    assert await p.expire_checkout(co.provider_ref) == "expired"  # ACQ.TRADE_NOT_EXIST
    h.clock.advance(timedelta(minutes=31))  # type: ignore[attr-defined]
    with pytest.raises(Refusal, match="TRADE_HAS_CLOSE"):
        h.pay(qr_code=co.url)
    assert await p.fetch_status(co.provider_ref) == "open"  # still "does not exist"


async def test_close_a_scanned_trade_and_close_after_payment(pair: Pair):
    p, h = pair.provider, pair.host
    scanned = await p.create_checkout(request("GPSCANNED001"))
    h.scan(scanned.provider_ref)
    assert await p.expire_checkout(scanned.provider_ref) == "expired"
    with pytest.raises(Refusal, match="TRADE_HAS_CLOSE"):
        h.pay(scanned.provider_ref)
    assert await p.fetch_status(scanned.provider_ref) == "expired"  # TRADE_CLOSED
    assert await p.expire_checkout(scanned.provider_ref) == "expired"  # closed already
    paid = await p.create_checkout(request("GPPAIDFIRST1"))
    trade_no = h.pay(paid.provider_ref)
    status = await p.expire_checkout(paid.provider_ref)  # ACQ.TRADE_STATUS_ERROR, then query
    assert (status.state, status.provider_payment_id) == ("paid", trade_no)


async def test_refund_is_once_per_key_and_settles_under_its_out_request_no(pair: Pair):
    p, h = pair.provider, pair.host
    co = await p.create_checkout(request())
    trade_no = h.pay(co.provider_ref)
    key = "gatepass-refund-order-alipay-GPTESTORDER1-1"
    rid = await p.refund(trade_no, 500, "CNY", idempotency_key=key)
    assert rid == key
    again = await p.refund(trade_no, 500, "CNY", idempotency_key=key)  # fund_change N
    assert again == rid and h.trade(co.provider_ref).refunded_fen == 500
    notice = p.refund_notice(trade_no, 500, "CNY", rid, "GPTESTORDER1")
    e = notice.event
    assert e is not None and e.kind is EventKind.REFUNDED and e.reversal_id == rid
    assert (e.amount_minor, e.reversal_amount_minor, e.provider_payment_id) == (500, 500, trade_no)
    # Alipay's notification of that refund names the same refund.
    await h.settle()
    refund_note = next(n for n in h.notifications if n.fields.get("out_biz_no"))
    assert refund_note.fields["out_biz_no"] == rid and refund_note.fields["refund_fee"] == "5.00"
    # The rest, under a new key: refunded in full, the trade closes.
    rid2 = await p.refund(trade_no, 490, "CNY", idempotency_key=key[:-1] + "2")
    n2 = p.refund_notice(trade_no, 490, "CNY", rid2, "GPTESTORDER1").event
    assert n2 is not None and (n2.amount_minor, n2.reversal_amount_minor) == (990, 490)
    assert h.trade(co.provider_ref).status == "TRADE_CLOSED"


async def test_refunds_alipay_refuses(pair: Pair):
    p, h = pair.provider, pair.host
    co = await p.create_checkout(request())
    trade_no = h.pay(co.provider_ref)
    with pytest.raises(PaymentRefused, match=r"ACQ\.REFUND_AMT_NOT_EQUAL_TOTAL"):
        await p.refund(trade_no, 991, "CNY", idempotency_key="k-too-much")
    h.book.seller_balance_fen = 100
    with pytest.raises(PaymentRefused, match=r"ACQ\.SELLER_BALANCE_NOT_ENOUGH"):
        await p.refund(trade_no, 990, "CNY", idempotency_key="k-no-balance")
    with pytest.raises(PaymentRefused, match=r"ACQ\.TRADE_NOT_EXIST"):
        await p.refund("2026000000000000", 100, "CNY", idempotency_key="k-unknown")
    with pytest.raises(PaymentRefused, match="CNY"):
        await p.refund(trade_no, 100, "USD", idempotency_key="k-usd")
    assert h.trade(co.provider_ref).refunded_fen == 0


def test_long_or_odd_keys_become_a_stable_out_request_no():
    assert (
        out_request_no("gatepass-refund-order-alipay-GP1-1") == "gatepass-refund-order-alipay-GP1-1"
    )
    long = "x" * 80
    assert out_request_no(long) == out_request_no(long) and len(out_request_no(long)) <= 64
    assert out_request_no("a b") != out_request_no("a_b")


async def test_an_unreachable_gateway_is_a_payment_error(pair: Pair):
    p = provider_for(pair.section, gateway="http://127.0.0.1:9/gateway.do")
    try:
        with pytest.raises(PaymentError, match="cannot reach"):
            await p.fetch_status("GPTESTORDER1")
    finally:
        await p.close()


def test_keys_in_the_wrong_places_are_refused_at_construction():
    with pytest.raises(PaymentError):
        AlipayProvider("1", "not a key", public_pem(new_key()), "https://x", PUBLIC_URL)
