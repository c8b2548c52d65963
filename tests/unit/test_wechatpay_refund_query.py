"""WechatPayProvider.refund_notice_now (RefundTracker) over real HTTP against the local
WeChat Pay host: GET /v3/refund/domestic/refunds/{out_refund_no}, signed for real, read
through the same mapping as the REFUND.* notification it stands in for."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from billing.errors import PaymentError, PaymentRefused
from billing.events import EventKind
from billing.provider import RefundSettler, RefundTracker
from billing.providers.wechatpay_provider import WechatPayProvider, out_refund_no
from sandbox.wechatpay_host import FakeWechatPay
from tests.unit.test_wechatpay_provider import Receiver, build, request


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


@pytest.fixture
async def wxpay(host: FakeWechatPay, receiver: Receiver) -> AsyncIterator[WechatPayProvider]:
    p = build(host, receiver.url)
    receiver.provider = p
    yield p
    await p.close()


KEY = "gatepass-refund-order-wechatpay-GPTEST000001-1"


async def _refund(host: FakeWechatPay, wxpay: WechatPayProvider) -> tuple[str, str]:
    await wxpay.create_checkout(request())
    tid = host.pay("GPTEST000001").transaction_id
    assert tid is not None
    return tid, await wxpay.refund(tid, 990, "CNY", idempotency_key=KEY)


def test_wechatpay_tracks_its_refunds_and_settles_none_itself(wxpay):
    assert isinstance(wxpay, RefundTracker) and not isinstance(wxpay, RefundSettler)


async def test_processing_is_none_then_success_is_the_notifications_event(
    host: FakeWechatPay, wxpay: WechatPayProvider, receiver: Receiver
):
    host.refund_outcome = "PROCESSING"
    tid, refund_id = await _refund(host, wxpay)
    assert await wxpay.refund_notice_now(refund_id, KEY, tid, 990, "CNY", "GPTEST000001") is None
    assert ("GET", f"/v3/refund/domestic/refunds/{KEY}", 200) in host.requests

    host.finish_refund(KEY, "SUCCESS")
    notice = await wxpay.refund_notice_now(refund_id, KEY, tid, 990, "CNY", "GPTEST000001")
    assert notice is not None and notice.event_type == "REFUND.SUCCESS"
    sent = (await receiver.wait(2))[1].event
    got = notice.event
    assert got is not None and sent is not None
    # The notification's event, but for the event's own id: the ledger dedupes the two by
    # the refund's id.
    assert (got.kind, got.reversal_id, got.provider_payment_id, got.order_no) == (
        EventKind.REFUNDED,
        refund_id,
        tid,
        "GPTEST000001",
    )
    assert (got.amount_minor, got.reversal_amount_minor, got.payment_amount_minor) == (
        sent.amount_minor,
        sent.reversal_amount_minor,
        sent.payment_amount_minor,
    )
    assert got.reversal_id == sent.reversal_id and notice.event_id != sent.event_id
    # Asked again, the same event id: applied once.
    again = await wxpay.refund_notice_now(refund_id, KEY, tid, 990, "CNY", "GPTEST000001")
    assert again is not None and again.event_id == notice.event_id


@pytest.mark.parametrize("outcome", ["ABNORMAL", "CLOSED"])
async def test_a_failed_refund_is_refund_failed(host, wxpay, outcome):
    host.refund_outcome = "PROCESSING"
    tid, refund_id = await _refund(host, wxpay)
    host.finish_refund(KEY, outcome)
    notice = await wxpay.refund_notice_now(refund_id, KEY, tid, 990, "CNY", "GPTEST000001")
    assert notice is not None and notice.event is not None
    assert notice.event_type == f"REFUND.{outcome}"
    assert (notice.event.kind, notice.event.reversal_id) == (EventKind.REFUND_FAILED, refund_id)


async def test_a_refund_wechat_does_not_know_or_another_refund_is_an_error(host, wxpay):
    host.refund_outcome = "PROCESSING"
    tid, refund_id = await _refund(host, wxpay)
    with pytest.raises(PaymentRefused, match="RESOURCE_NOT_EXISTS"):
        await wxpay.refund_notice_now(refund_id, "no-such-refund", tid, 990, "CNY", "GP1")
    with pytest.raises(PaymentError, match="not 5030"):
        await wxpay.refund_notice_now("5030" + "0" * 25, KEY, tid, 990, "CNY", "GPTEST000001")
    with pytest.raises(PaymentError, match="another refund"):
        await wxpay.refund_notice_now(refund_id, KEY, "42" + "0" * 26, 990, "CNY", "GP1")
    host.merchant.refunds[out_refund_no(KEY)].status = "SOMETHING_NEW"
    with pytest.raises(PaymentError, match="unknown refund status"):
        await wxpay.refund_notice_now(refund_id, KEY, tid, 990, "CNY", "GPTEST000001")
