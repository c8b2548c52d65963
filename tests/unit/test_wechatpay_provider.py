"""WechatPayProvider's API calls over real HTTP against the local WeChat Pay host
(sandbox/wechatpay_host.py): requests signed for real with the merchant key, answers verified
with the platform key, notifications received by a small webhook receiver that verifies and
decrypts them with the provider itself."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from billing.errors import PaymentError, PaymentRefused
from billing.events import EventKind, WebhookNotice
from billing.provider import CheckoutRequest
from billing.providers.wechatpay_provider import (
    WechatPayProvider,
    description,
    out_refund_no,
    time_expire,
)
from sandbox.wechatpay.crypto import (
    new_key,
    parse_authorization,
    private_pem,
    public_pem,
    request_message,
    verify,
)
from sandbox.wechatpay.merchant import ApiError
from sandbox.wechatpay_host import FakeWechatPay


class Receiver:
    """Our webhook endpoint in miniature: verify, parse, answer as the provider says."""

    def __init__(self) -> None:
        self.notices: list[WebhookNotice] = []
        self.provider: WechatPayProvider | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/webhooks/wechatpay", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def _handle(self, request: web.Request) -> web.Response:
        assert self.provider is not None
        body = await request.read()
        notice = self.provider.parse_webhook(request.headers, body)
        self.notices.append(notice)
        ack = self.provider.ack()
        return web.Response(status=ack.status, body=ack.body)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait(self, n: int, timeout: float = 5) -> list[WebhookNotice]:
        deadline = time.monotonic() + timeout
        while len(self.notices) < n:
            assert time.monotonic() < deadline, f"{len(self.notices)} notices, not {n}"
            await asyncio.sleep(0.02)
        return self.notices


@pytest.fixture
async def host() -> AsyncIterator[FakeWechatPay]:
    h = FakeWechatPay()
    await h.start()
    yield h
    await h.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def build(host: FakeWechatPay, public_url: str, **over: Any) -> WechatPayProvider:
    cfg = host.config() | over
    return WechatPayProvider(
        mchid=cfg["mchid"],
        appid=cfg["appid"],
        apiv3_key=cfg["apiv3_key"],
        private_key_path=Path(cfg["private_key_path"]),
        cert_serial_no=cfg["cert_serial_no"],
        platform_public_key_path=Path(cfg["platform_public_key_path"]),
        platform_public_key_id=cfg["platform_public_key_id"],
        public_url=public_url,
        api_base=cfg["api_base"],
    )


@pytest.fixture
async def wxpay(host: FakeWechatPay, receiver: Receiver) -> AsyncIterator[WechatPayProvider]:
    p = build(host, receiver.url)
    receiver.provider = p
    yield p
    await p.close()


def request(order_no: str = "GPTEST000001", **over: Any) -> CheckoutRequest:
    fields: dict[str, Any] = {
        "order_no": order_no,
        "title": "Traders Club 30 days",
        "amount_minor": 990,
        "currency": "CNY",
        "recurring": False,
        "duration_days": 30,
        "success_url": "https://shop.example/paid",
        "cancel_url": "https://shop.example/cancelled",
        "customer_ref": "7",
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
    }
    return CheckoutRequest(**(fields | over))


# -- pure helpers ----------------------------------------------------------------------------


def test_description_is_cut_to_127_bytes_on_a_character_boundary():
    title = "付费进群" * 20  # 3 bytes a character: 240 bytes
    cut = description(title)
    assert len(cut.encode()) <= 127 and title.startswith(cut) and len(cut) == 42
    assert description("a" * 200) == "a" * 127
    assert description("  ") == "gatepass"


def test_time_expire_is_rfc3339_in_china_time_and_naive_means_utc():
    assert time_expire(datetime(2026, 12, 1, 0, 30, tzinfo=UTC)) == "2026-12-01T08:30:00+08:00"
    naive = datetime(2026, 12, 1, 0, 30, tzinfo=UTC).replace(tzinfo=None)
    assert time_expire(naive) == "2026-12-01T08:30:00+08:00"


def test_out_refund_no_keeps_a_fitting_key_and_digests_others():
    key = "gatepass-refund-order-wechatpay-GPABCDEFGHJK-1"
    assert out_refund_no(key) == key
    long = "gatepass-refund-" + "x" * 80
    odd = "gatepass refund/with spaces"
    for k in (long, odd):
        made = out_refund_no(k)
        assert made == out_refund_no(k) and len(made) <= 64 and made.startswith("gp-")
    assert out_refund_no(long) != out_refund_no(odd)


# -- create ----------------------------------------------------------------------------------


async def test_create_sends_a_signed_native_order_and_returns_its_code_url(host, wxpay):
    title = "进群" * 40  # 240 bytes: cut to 127
    at = datetime(2030, 1, 1, 4, 0, tzinfo=UTC)
    checkout = await wxpay.create_checkout(request(title=title, expires_at=at))
    order = host.merchant.order("GPTEST000001")
    assert checkout.url == order.code_url and checkout.url.startswith(
        "weixin://wxpay/bizpayurl?pr="
    )
    assert (checkout.provider_ref, checkout.shown) == ("GPTEST000001", "qr")
    assert order.total == 990 and order.description == description(title)
    assert order.notify_url == wxpay.notify_url
    assert order.time_expire == at and order.time_expire.utcoffset() == timedelta(hours=8)
    assert host.requests[-1] == ("POST", "/v3/pay/transactions/native", 200)


async def test_the_authorization_header_is_the_merchant_keys_signature(host, wxpay):
    """The request signature, checked by hand against the published rule."""
    path, body = "/v3/pay/transactions/out-trade-no/GPX?mchid=1900000109", ""
    auth = parse_authorization(wxpay._keys.authorization("GET", path, body))
    assert auth["mchid"] == host.mchid and auth["serial_no"] == host.cert_serial_no
    message = request_message("GET", path, auth["timestamp"], auth["nonce_str"], body)
    assert verify(host.merchant_key.public_key(), message, auth["signature"])
    assert not verify(host.merchant_key.public_key(), message + "x", auth["signature"])


async def test_creating_again_answers_the_same_code_and_other_params_are_refused(host, wxpay):
    first = await wxpay.create_checkout(request())
    again = await wxpay.create_checkout(request())
    assert again.url == first.url
    with pytest.raises(PaymentRefused, match="INVALID_REQUEST"):
        await wxpay.create_checkout(request(amount_minor=1000))
    assert len(host.merchant.orders) == 1


async def test_create_refuses_other_currencies_without_calling(host, wxpay):
    with pytest.raises(PaymentError, match="does not accept USD"):
        await wxpay.create_checkout(request(currency="USD"))
    assert host.requests == []


async def test_a_refusal_is_one_line_with_wechats_code(host, wxpay):
    with pytest.raises(PaymentRefused) as err:
        await wxpay.create_checkout(request(order_no="GP 1"))  # not WeChat's alphabet
    assert "PARAM_ERROR" in str(err.value) and "(HTTP 400)" in str(err.value)
    assert "\n" not in str(err.value)


async def test_a_wrong_merchant_key_is_refused_with_sign_error(host, receiver, tmp_path):
    (tmp_path / "other.pem").write_bytes(private_pem(new_key()))
    p = build(host, receiver.url, private_key_path=str(tmp_path / "other.pem"))
    try:
        with pytest.raises(PaymentRefused, match=r"SIGN_ERROR.*HTTP 401"):
            await p.create_checkout(request())
    finally:
        await p.close()
    assert host.merchant.orders == {}


async def test_an_answer_not_signed_by_the_platform_key_is_not_believed(host, receiver, tmp_path):
    (tmp_path / "pub.pem").write_bytes(public_pem(new_key().public_key()))
    p = build(host, receiver.url, platform_public_key_path=str(tmp_path / "pub.pem"))
    try:
        with pytest.raises(PaymentError, match="signature does not verify") as err:
            await p.create_checkout(request())
        assert not isinstance(err.value, PaymentRefused)
    finally:
        await p.close()


async def test_an_unreachable_host_is_a_payment_error_that_may_work_later(host, tmp_path):
    p = build(host, "http://127.0.0.1:9", api_base="http://127.0.0.1:9")
    try:
        with pytest.raises(PaymentError, match="cannot reach") as err:
            await p.fetch_status("GPTEST000001")
        assert not isinstance(err.value, PaymentRefused)
    finally:
        await p.close()


# -- query, pay, close -----------------------------------------------------------------------


async def test_fetch_status_follows_the_trade_state(host, wxpay, receiver):
    await wxpay.create_checkout(request())
    assert (await wxpay.fetch_status("GPTEST000001")).state == "open"
    order = host.pay("GPTEST000001")
    status = await wxpay.fetch_status("GPTEST000001")
    assert status.state == "paid"
    assert (status.amount_minor, status.currency) == (990, "CNY")
    assert status.provider_payment_id == order.transaction_id
    # The notification it sent verifies, decrypts and names the same payment.
    (notice,) = await receiver.wait(1)
    assert notice.event is not None and notice.event.kind is EventKind.PAID
    assert notice.event.provider_payment_id == order.transaction_id
    assert host.notifications[0].delivered


async def test_an_order_wechat_does_not_know_is_an_error_not_open(wxpay):
    with pytest.raises(PaymentRefused, match=r"ORDER_NOT_EXIST.*HTTP 404"):
        await wxpay.fetch_status("GPNOSUCHORDER")


async def test_expire_closes_the_order_and_its_code_can_no_longer_be_paid(host, wxpay):
    checkout = await wxpay.create_checkout(request())
    assert (await wxpay.expire_checkout("GPTEST000001")).state == "expired"
    with pytest.raises(ApiError, match="ORDER_CLOSED"):
        host.scan(checkout.url)
    assert (await wxpay.fetch_status("GPTEST000001")).state == "expired"
    # Closing again, and creating the order again, do not reopen it.
    assert (await wxpay.expire_checkout("GPTEST000001")).state == "expired"
    with pytest.raises(PaymentRefused, match="ORDER_CLOSED"):
        await wxpay.create_checkout(request())


async def test_expire_after_the_buyer_paid_answers_paid(host, wxpay):
    await wxpay.create_checkout(request())
    order = host.pay("GPTEST000001")
    status = await wxpay.expire_checkout("GPTEST000001")
    assert status.state == "paid" and status.provider_payment_id == order.transaction_id
    assert ("POST", "/v3/pay/transactions/out-trade-no/GPTEST000001/close", 400) in host.requests


async def test_expire_of_an_order_wechat_never_had_is_expired(host, wxpay):
    assert (await wxpay.expire_checkout("GPNEVERMADE1")).state == "expired"


async def test_the_host_refuses_paying_after_time_expire(host, wxpay):
    soon = datetime.now(UTC) + timedelta(seconds=1)
    await wxpay.create_checkout(request(expires_at=soon))
    host.clock = type("Later", (), {"now": lambda self: soon + timedelta(seconds=1)})()
    with pytest.raises(ApiError, match="ORDER_CLOSED"):
        host.pay("GPTEST000001")


# -- refunds ---------------------------------------------------------------------------------


async def test_refund_asks_the_total_then_refunds_once_per_key(host, wxpay, receiver):
    await wxpay.create_checkout(request())
    order = host.pay("GPTEST000001")
    tid = order.transaction_id
    assert tid is not None
    key = "gatepass-refund-order-wechatpay-GPTEST000001-1"
    refund_id = await wxpay.refund(tid, 990, "CNY", idempotency_key=key)
    again = await wxpay.refund(tid, 990, "CNY", idempotency_key=key)
    assert again == refund_id and len(host.refunds) == 1
    made = host.refunds[0]
    assert (made.out_refund_no, made.refund, made.reason) == (key, 990, "重复支付退款")
    assert made.notify_url == wxpay.notify_url
    assert ("GET", f"/v3/pay/transactions/id/{tid}", 200) in host.requests
    notices = await receiver.wait(2)  # TRANSACTION.SUCCESS, then REFUND.SUCCESS
    ev = notices[1].event
    assert notices[1].event_type == "REFUND.SUCCESS" and ev is not None
    assert ev.kind is EventKind.REFUNDED and ev.reversal_id == refund_id
    assert (ev.provider_payment_id, ev.amount_minor, ev.order_no) == (tid, 990, "GPTEST000001")


async def test_refund_refusals_are_payment_refused(host, wxpay):
    await wxpay.create_checkout(request())
    tid = host.pay("GPTEST000001").transaction_id
    assert tid is not None
    with pytest.raises(PaymentRefused, match="INVALID_REQUEST"):
        await wxpay.refund(tid, 991, "CNY", idempotency_key="k1")
    host.merchant.balance_short = True
    with pytest.raises(PaymentRefused, match=r"NOT_ENOUGH.*HTTP 403"):
        await wxpay.refund(tid, 990, "CNY", idempotency_key="k2")
    with pytest.raises(PaymentRefused, match="ORDER_NOT_EXIST"):
        await wxpay.refund("4200000000000000000000009999", 1, "CNY", idempotency_key="k3")
    with pytest.raises(PaymentRefused, match="CNY only"):
        await wxpay.refund(tid, 990, "USD", idempotency_key="k4")
    assert host.refunds == []


async def test_an_abnormal_refund_is_notified_and_moves_no_money(host, wxpay, receiver):
    await wxpay.create_checkout(request())
    tid = host.pay("GPTEST000001").transaction_id
    assert tid is not None
    host.refund_outcome = "ABNORMAL"
    await wxpay.refund(tid, 990, "CNY", idempotency_key="k1")
    notices = await receiver.wait(2)
    assert notices[1].event_type == "REFUND.ABNORMAL" and notices[1].event is not None
    assert notices[1].event.kind is EventKind.REFUND_FAILED
    assert host.merchant.order("GPTEST000001").refunded == 0


# -- the online check and the host's own refusals --------------------------------------------


async def test_check_keys_proves_the_key_without_a_payment(host, wxpay):
    assert "ORDER_NOT_EXIST" in await wxpay.check_keys()
    assert host.merchant.orders == {} and host.refunds == []


async def test_the_host_refuses_unsigned_and_stale_requests(host):
    import aiohttp

    async with aiohttp.ClientSession() as http:
        url = f"{host.url}/v3/pay/transactions/out-trade-no/GPX?mchid={host.mchid}"
        async with http.get(url) as r:
            assert r.status == 401 and (await r.json())["code"] == "SIGN_ERROR"
            assert "Wechatpay-Signature" in r.headers
        bad = 'WECHATPAY2-SHA256-RSA2048 mchid="1900000109",nonce_str="n",signature="c2ln",'
        bad += f'timestamp="{int(time.time())}",serial_no="{host.cert_serial_no}"'
        async with http.get(url, headers={"Authorization": bad}) as r:
            assert r.status == 401 and json.loads(await r.text())["message"] == "签名错误"


async def test_the_hosts_sandbox_controls_over_http(host, wxpay, receiver):
    """The playground's controls: pay by order number or by scanning the code, lose the next
    notification, list and resend notifications, list refunds."""
    import aiohttp

    first = await wxpay.create_checkout(request("GPCONTROL001"))
    await wxpay.create_checkout(request("GPCONTROL002"))
    async with aiohttp.ClientSession() as http:

        async def post(path: str, data: Any = None) -> tuple[int, Any]:
            async with http.post(f"{host.url}{path}", json=data) as r:
                return r.status, await r.json()

        assert await post("/sandbox/lose", {"n": 1}) == (200, {"lose_next": 1})
        status, paid = await post("/sandbox/scan", {"code_url": first.url})
        assert status == 200 and paid["trade_state"] == "SUCCESS"
        status, again = await post("/sandbox/pay/GPCONTROL001")
        assert (status, again["code"]) == (400, "ORDERPAID")
        status, unknown = await post("/sandbox/pay/GPNOSUCH0001")
        assert (status, unknown["code"]) == (404, "ORDER_NOT_EXIST")
        assert (await post("/sandbox/pay/GPCONTROL002"))[0] == 200
        await receiver.wait(1)  # the first notification was lost, the second delivered
        async with http.get(f"{host.url}/sandbox/notifications") as r:
            listed = await r.json()
        assert [(n["out_trade_no"], n["lost"]) for n in listed] == [
            ("GPCONTROL001", True),
            ("GPCONTROL002", False),
        ]
        status, sent = await post(f"/sandbox/notifications/{listed[0]['id']}/resend")
        assert (status, sent["status"]) == (200, 204)
        notices = await receiver.wait(2)
        assert notices[-1].event is not None and notices[-1].event.order_no == "GPCONTROL001"
        async with http.get(f"{host.url}/sandbox/refunds") as r:
            assert await r.json() == []
