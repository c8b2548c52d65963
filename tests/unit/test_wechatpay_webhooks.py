"""WechatPayProvider's notifications: signed for real with test RSA keys and encrypted with a
test APIv3 key (the sandbox host's own crypto, written from the published protocol), then
verified, decrypted and mapped by the provider; and every way verification fails."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from billing.errors import MalformedEvent, WebhookRejected
from billing.events import EventKind
from billing.provider import QrPaymentProvider, Refunder, WebhookRefusal
from billing.providers.wechatpay_provider import WechatPayProvider
from sandbox.wechatpay.crypto import (
    answer_message,
    new_key,
    private_pem,
    public_pem,
    random_text,
    seal,
    sign,
)

MCHID, APPID = "1900000109", "wxd678efh567hg6787"
KEY_ID = "PUB_KEY_ID_0119000000000000000000"
APIV3 = "a" * 16 + "B" * 16
MERCHANT, PLATFORM, STRANGER = new_key(), new_key(), new_key()


class FixedClock:
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)


def make_provider(tmp_path: Path, clock: Any = None, apiv3: str = APIV3) -> WechatPayProvider:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "key.pem").write_bytes(private_pem(MERCHANT))
    (tmp_path / "pub.pem").write_bytes(public_pem(PLATFORM.public_key()))
    return WechatPayProvider(
        mchid=MCHID,
        appid=APPID,
        apiv3_key=apiv3,
        private_key_path=tmp_path / "key.pem",
        cert_serial_no="ABCDEF0123456789",
        platform_public_key_path=tmp_path / "pub.pem",
        platform_public_key_id=KEY_ID,
        public_url="https://shop.example",
        api_base="http://127.0.0.1:9",
        clock=clock,
    )


@pytest.fixture
def provider(tmp_path: Path) -> WechatPayProvider:
    return make_provider(tmp_path)


def transaction(**over: Any) -> dict[str, Any]:
    tx: dict[str, Any] = {
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": "GPABCDEFGHJK",
        "transaction_id": "4200000000000000000000000001",
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": "2026-12-01T08:00:00+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": 990, "payer_total": 990, "currency": "CNY", "payer_currency": "CNY"},
    }
    return tx | over


def refund(status: str = "SUCCESS", **over: Any) -> dict[str, Any]:
    rf: dict[str, Any] = {
        "mchid": MCHID,
        "out_trade_no": "GPABCDEFGHJK",
        "transaction_id": "4200000000000000000000000001",
        "out_refund_no": "gatepass-refund-order-wechatpay-GPABCDEFGHJK-1",
        "refund_id": "50300000000000000000000000001",
        "refund_status": status,
        "success_time": "2026-12-01T09:00:00+08:00",
        "user_received_account": "支付用户零钱",
        "amount": {"total": 990, "refund": 990, "payer_total": 990, "payer_refund": 990},
    }
    return rf | over


def envelope(
    event_type: str, resource: dict[str, Any], *, apiv3: str = APIV3, kind: str = "transaction"
) -> bytes:
    sealed = seal(apiv3, json.dumps(resource, ensure_ascii=False), kind)
    return json.dumps(
        {
            "id": "EV-" + random_text(20),
            "create_time": "2026-12-01T08:00:01+08:00",
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": "支付成功",
            "resource": {
                "original_type": kind,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": sealed.ciphertext,
                "associated_data": sealed.associated_data,
                "nonce": sealed.nonce,
            },
        },
        ensure_ascii=False,
    ).encode()


def headers_for(
    body: bytes, *, key: Any = PLATFORM, serial: str = KEY_ID, at: float | None = None
) -> dict[str, str]:
    ts, nonce = str(int(time.time() if at is None else at)), random_text(32)
    return {
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": sign(key, answer_message(ts, nonce, body.decode())),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


# -- the mapping ---------------------------------------------------------------------------


def test_the_provider_offers_what_the_protocols_need(provider):
    assert provider.name == "wechatpay" and provider.scan_app == "wechat"
    assert isinstance(provider, QrPaymentProvider | Refunder | WebhookRefusal)
    assert all(isinstance(provider, p) for p in (QrPaymentProvider, Refunder, WebhookRefusal))
    assert provider.accepts("CNY") and provider.accepts("cny")
    assert not provider.accepts("USD") and not provider.accepts("XTR")
    assert provider.notify_url == "https://shop.example/webhooks/wechatpay"


def test_a_paid_transaction_maps_to_paid(provider):
    body = envelope("TRANSACTION.SUCCESS", transaction())
    notice = provider.parse_webhook(headers_for(body), body)
    assert notice.event_id == json.loads(body)["id"]
    assert notice.event_type == "TRANSACTION.SUCCESS"
    ev = notice.event
    assert ev is not None and ev.kind is EventKind.PAID and ev.provider == "wechatpay"
    assert (ev.order_no, ev.amount_minor, ev.currency) == ("GPABCDEFGHJK", 990, "CNY")
    assert ev.provider_payment_id == "4200000000000000000000000001"
    assert ev.provider_ref == "GPABCDEFGHJK"


def test_a_transaction_not_in_success_is_recorded_without_an_event(provider):
    body = envelope("TRANSACTION.SUCCESS", transaction(trade_state="PAYERROR"))
    notice = provider.parse_webhook(headers_for(body), body)
    assert notice.event is None and notice.event_type == "TRANSACTION.SUCCESS"


def test_a_refund_success_maps_to_refunded_with_its_own_id(provider):
    body = envelope("REFUND.SUCCESS", refund(), kind="refund")
    ev = provider.parse_webhook(headers_for(body), body).event
    assert ev is not None and ev.kind is EventKind.REFUNDED
    assert ev.order_no == "GPABCDEFGHJK"
    assert ev.provider_payment_id == "4200000000000000000000000001"
    assert ev.reversal_id == "50300000000000000000000000001"
    assert (ev.amount_minor, ev.reversal_amount_minor, ev.payment_amount_minor) == (990, 990, 990)
    assert ev.currency == "CNY"


def test_a_partial_refund_carries_the_payments_total(provider):
    rf = refund(amount={"total": 990, "refund": 300, "payer_total": 990, "payer_refund": 300})
    body = envelope("REFUND.SUCCESS", rf, kind="refund")
    ev = provider.parse_webhook(headers_for(body), body).event
    assert ev is not None
    assert (ev.amount_minor, ev.reversal_amount_minor, ev.payment_amount_minor) == (300, 300, 990)


@pytest.mark.parametrize("event_type", ["REFUND.ABNORMAL", "REFUND.CLOSED"])
def test_failed_refunds_are_recorded_and_move_no_money(provider, event_type, caplog):
    body = envelope(event_type, refund(event_type.split(".")[1]), kind="refund")
    notice = provider.parse_webhook(headers_for(body), body)
    ev = notice.event
    # REFUND_FAILED: not money (the ledger records nothing); the owner hears it.
    assert ev is not None and ev.kind is EventKind.REFUND_FAILED
    assert notice.event_type == event_type and ev.reversal_id == "50300000000000000000000000001"
    assert "no money moved" in caplog.text


def test_an_unknown_event_type_is_recorded_without_an_event(provider):
    body = envelope("TRANSACTION.SOMETHING_NEW", {"mchid": MCHID})
    notice = provider.parse_webhook(headers_for(body), body)
    assert notice.event is None and notice.event_type == "TRANSACTION.SOMETHING_NEW"


# -- what verifies but cannot be used: MalformedEvent --------------------------------------


def test_a_signed_body_that_is_not_json_is_malformed(provider):
    body = b"{not json"
    provider.verify_webhook(headers_for(body), body)
    with pytest.raises(MalformedEvent, match="not JSON"):
        provider.parse_event(body)


def test_a_resource_encrypted_with_another_key_is_malformed_with_its_id(provider):
    body = envelope("TRANSACTION.SUCCESS", transaction(), apiv3="z" * 32)
    provider.verify_webhook(headers_for(body), body)
    with pytest.raises(MalformedEvent, match="does not decrypt") as err:
        provider.parse_event(body)
    assert err.value.event_id == json.loads(body)["id"]
    assert err.value.event_type == "TRANSACTION.SUCCESS"


def test_a_tampered_ciphertext_or_garbage_resource_is_malformed(provider):
    data = json.loads(envelope("TRANSACTION.SUCCESS", transaction()))
    data["resource"]["ciphertext"] = "!!notbase64"
    with pytest.raises(MalformedEvent, match=r"cannot be decrypted|does not decrypt"):
        provider.parse_event(json.dumps(data).encode())
    data["resource"] = {"algorithm": "AEAD_AES_256_GCM", "nonce": 5, "ciphertext": "x"}
    with pytest.raises(MalformedEvent, match="not text"):
        provider.parse_event(json.dumps(data).encode())
    data["resource_type"] = "plain"
    with pytest.raises(MalformedEvent, match="no encrypted resource"):
        provider.parse_event(json.dumps(data).encode())


def test_a_decrypted_resource_of_the_wrong_shape_is_malformed(provider):
    tx = transaction(amount={"total": "9.90", "currency": "CNY"})
    body = envelope("TRANSACTION.SUCCESS", tx)
    with pytest.raises(MalformedEvent, match="unexpected shape"):
        provider.parse_event(body)
    body = envelope("TRANSACTION.SUCCESS", transaction(mchid="1111111111"))
    with pytest.raises(MalformedEvent, match="another merchant"):
        provider.parse_event(body)
    body = envelope("TRANSACTION.SUCCESS", transaction(amount={"total": 0, "currency": "CNY"}))
    with pytest.raises(MalformedEvent, match="outside"):
        provider.parse_event(body)


def test_a_body_without_id_or_event_type_is_malformed(provider):
    with pytest.raises(MalformedEvent, match="id and an event_type"):
        provider.parse_event(b'{"event_type": "TRANSACTION.SUCCESS"}')


# -- what does not verify: WebhookRejected -------------------------------------------------


def test_a_tampered_body_is_rejected(provider):
    body = envelope("TRANSACTION.SUCCESS", transaction())
    headers = headers_for(body)
    tampered = body.replace(b'"summary"', b'"Summary"')
    with pytest.raises(WebhookRejected, match="bad WeChat Pay signature"):
        provider.verify_webhook(headers, tampered)


def test_a_signature_by_another_key_is_rejected(provider):
    body = envelope("TRANSACTION.SUCCESS", transaction())
    with pytest.raises(WebhookRejected, match="bad WeChat Pay signature"):
        provider.verify_webhook(headers_for(body, key=STRANGER), body)


def test_an_unknown_serial_is_rejected(provider):
    body = envelope("TRANSACTION.SUCCESS", transaction())
    with pytest.raises(WebhookRejected, match="not the configured platform_public_key_id"):
        provider.verify_webhook(headers_for(body, serial="PUB_KEY_ID_0119999"), body)


@pytest.mark.parametrize(("offset", "word"), [(-301, "old"), (301, "ahead")])
def test_a_timestamp_outside_five_minutes_is_rejected(tmp_path, offset, word):
    now = 1_800_000_000
    provider = make_provider(tmp_path, clock=FixedClock(now))
    body = envelope("TRANSACTION.SUCCESS", transaction())
    with pytest.raises(WebhookRejected, match=f"s {word}"):
        provider.verify_webhook(headers_for(body, at=now + offset), body)
    # Just inside the window, both ways, the same notification verifies.
    provider.verify_webhook(headers_for(body, at=now + (offset // 301) * 299), body)


@pytest.mark.parametrize(
    "header",
    ["Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial"],
)
def test_a_missing_header_is_rejected(provider, header):
    body = envelope("TRANSACTION.SUCCESS", transaction())
    headers = headers_for(body)
    del headers[header]
    with pytest.raises(WebhookRejected, match=f"missing {header}"):
        provider.verify_webhook(headers, body)


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("Wechatpay-Timestamp", "12ab", "not a unix time"),
        ("Wechatpay-Timestamp", "9" * 4000, "not a unix time"),
        ("Wechatpay-Timestamp", "\uff11\uff12\uff13", "not a unix time"),  # full-width digits
        ("Wechatpay-Nonce", "has space", "not a nonce"),
        ("Wechatpay-Serial", "PUB KEY", "not a key id"),
        ("Wechatpay-Signature", "", "not a base64 signature"),
        ("Wechatpay-Signature", "é" * 10, "not a base64 signature"),
        ("Wechatpay-Signature", "not base64 at all", "bad WeChat Pay signature"),
        ("Wechatpay-Signature-Type", "WECHATPAY2-SM2-WITH-SM3", "Signature-Type"),
    ],
)
def test_a_malformed_header_is_rejected_in_one_line(provider, header, value, reason):
    body = envelope("TRANSACTION.SUCCESS", transaction())
    headers = headers_for(body) | {header: value}
    with pytest.raises(WebhookRejected, match=reason) as err:
        provider.verify_webhook(headers, body)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200


def test_a_body_that_is_not_utf8_is_rejected(provider):
    body = b'{"id": "\xff"}'
    headers = headers_for(b"{}")
    with pytest.raises(WebhookRejected, match="not UTF-8"):
        provider.verify_webhook(headers, body)


def test_header_names_are_case_insensitive(provider):
    body = envelope("TRANSACTION.SUCCESS", transaction())
    lower = {k.lower(): v for k, v in headers_for(body).items()}
    assert provider.parse_webhook(lower, body).event is not None


# -- answers -------------------------------------------------------------------------------


def test_ack_is_204_without_a_body_and_refusals_are_wechat_shaped(provider):
    ack = provider.ack()
    assert (ack.status, ack.body) == (204, b"")
    for status in (400, 500):
        refused = provider.refuse(status, "rejected: bad WeChat Pay signature\nsecond line")
        assert refused.status == status and refused.content_type == "application/json"
        data = json.loads(refused.body)
        assert data == {"code": "FAIL", "message": "rejected: bad WeChat Pay signature second line"}
