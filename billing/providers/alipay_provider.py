"""Alipay face-to-face (当面付, QR code): the only module that imports `python-alipay-sdk`.

The SDK builds and RSA2-signs the request parameters and verifies Alipay's signatures; the
HTTP is ours, on aiohttp: the SDK's own calls go through urllib's blocking `urlopen`, which
would stall the event loop (every webhook, every chat update) for as long as the gateway
takes to answer. Every gateway answer is verified before it is believed: Alipay signs the
exact text of `<method>_response`, which billing/providers/alipay_wire.py cuts out of the
raw body.

Flow: `alipay.trade.precreate` gives the QR payload (`qr_code`); the buyer scans and pays; the
form-encoded notification (RSA2 over every field but sign/sign_type) grants. A trade does not
exist at Alipay until it is scanned, so `alipay.trade.query` answers ACQ.TRADE_NOT_EXIST for
an order that is merely open. Refunds go through `alipay.trade.refund` and are settled in the
ledger as soon as the call succeeded (RefundSettler); Alipay's own refund notification names
the same out_request_no and dedupes with it.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from alipay import AliPay  # type: ignore[import-untyped]
from alipay.exceptions import AliPayException  # type: ignore[import-untyped]

from billing.errors import PaymentError, PaymentRefused, WebhookRejected, one_line
from billing.events import EventKind, PaymentEvent, WebhookNotice
from billing.provider import (
    Checkout,
    CheckoutRequest,
    CheckoutStatus,
    WebhookAck,
    refuse_unpayable_by_qr,
)
from billing.providers.alipay_wire import (
    CURRENCY,
    PAID_STATUSES,
    PROVIDER,
    fen_to_yuan,
    parse_notice,
    read_form,
    response_key,
    shanghai_time,
    signed_content,
    yuan_to_fen,
)

REQUEST_TIMEOUT_SECONDS = 15
SUCCESS = "10000"
# Codes that mean "try again later" rather than "no": Alipay's own failures.
_RETRYABLE = frozenset({"ACQ.SYSTEM_ERROR", "isp.unknow-error", "aop.ACQ.SYSTEM_ERROR"})
# out_request_no: at most 64 characters; we keep to a safe alphabet.
_REQUEST_NO = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
_SUBJECT_MAX = 256
# Alipay's `subject` must not carry "/", "=" or "&" (its documented rule: "不可使用特殊字符，
# 如 /，=，& 等"); the full-width forms read the same to the buyer.
_SUBJECT_SAFE = str.maketrans({"/": "\uff0f", "=": "\uff1d", "&": "\uff06"})


class _Answer:
    """A verified gateway answer (the `<method>_response` object)."""

    def __init__(self, method: str, content: dict[str, Any]) -> None:
        self.method, self.content = method, content
        self.code = str(content.get("code") or "")
        self.sub_code = str(content.get("sub_code") or "")

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS

    def line(self) -> str:
        """One short line naming what Alipay said."""
        msg = self.content.get("sub_msg") or self.content.get("msg") or ""
        what = self.sub_code or self.code or "no code"
        return one_line(f"alipay {self.method}: {what} {msg}", 240)

    def error(self) -> PaymentError:
        if self.code == "20000" or self.sub_code in _RETRYABLE:
            return PaymentError(self.line())
        return PaymentRefused(self.line())

    def text(self, name: str) -> str:
        value = self.content.get(name)
        if not isinstance(value, str) or not value:
            raise PaymentError(f"alipay {self.method}: the answer has no {name}")
        return value


def canonical_pem(text: str, *, private: bool) -> str:
    """A key file's text as the SDK can read it. The config check reads keys with
    `cryptography`, which takes a byte-order mark (a key saved by Windows Notepad) or the
    "Bag Attributes" lines `openssl pkcs12` writes before the PEM; the SDK's pycryptodome
    refuses both. So the key is read the config check's way and written out plain; text
    that does not read that way is passed on as it is, for the SDK to judge."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization as pem

    data = text.encode("utf-8")
    try:
        if private:
            key = pem.load_pem_private_key(data, password=None)
            out = key.private_bytes(pem.Encoding.PEM, pem.PrivateFormat.PKCS8, pem.NoEncryption())
        else:
            out = pem.load_pem_public_key(data).public_bytes(
                pem.Encoding.PEM, pem.PublicFormat.SubjectPublicKeyInfo
            )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return text
    return out.decode("ascii")


def subject(title: str, order_no: str) -> str:
    """The trade's `subject`: the plan's title on one line, without the characters Alipay
    refuses, at most 256 characters; the order number if nothing is left."""
    text = " ".join(title.translate(_SUBJECT_SAFE).split())[:_SUBJECT_MAX]
    return text or order_no


def out_request_no(idempotency_key: str) -> str:
    """Our idempotency key as Alipay's out_request_no (the refund's id there and in our
    ledger): the key itself when it fits, else a digest of it (still one per key)."""
    if _REQUEST_NO.match(idempotency_key):
        return idempotency_key
    return "gp" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


class AlipayProvider:
    """`PaymentProvider` (+ Refunder, RefundSettler, WebhookRefusal) for Alipay face-to-face."""

    name = PROVIDER
    scan_app = "alipay"

    def __init__(
        self,
        app_id: str,
        app_private_key_pem: str,
        alipay_public_key_pem: str,
        gateway: str,
        public_url: str,
    ) -> None:
        try:
            self._sdk = AliPay(
                appid=app_id,
                app_private_key_string=canonical_pem(app_private_key_pem, private=True),
                alipay_public_key_string=canonical_pem(alipay_public_key_pem, private=False),
                sign_type="RSA2",
            )
        except (ValueError, IndexError, TypeError) as e:
            raise PaymentError("alipay: the app private key or Alipay public key is not RSA") from e
        self._app_id = app_id
        self._gateway = gateway
        self.notify_url = f"{public_url.rstrip('/')}/webhooks/alipay"
        self._http: aiohttp.ClientSession | None = None
        # refund_fee (all refunded on the trade so far) per out_request_no, from the refund
        # call's answer, for the RefundSettler notice made right after it.
        self._refunded_total: dict[str, int] = {}

    # -- the gateway ---------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:  # made on first use: it wants a loop
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
            )
        return self._http

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    def signed_request(self, method: str, biz: dict[str, Any], *, notify: bool = False) -> str:
        """The form body of a gateway call, signed RSA2 by the SDK. The timestamp is Beijing
        time, as the protocol says (the SDK would write the host's local time)."""
        extra: dict[str, Any] = {"timestamp": shanghai_time(datetime.now(UTC))}
        if notify:
            extra["notify_url"] = self.notify_url
        data = self._sdk.build_body(method, dict(biz), **extra)
        return str(self._sdk.sign_data(data))

    def verify_answer(self, method: str, raw: str) -> _Answer:
        """The gateway's answer, believed only if Alipay's signature holds over the exact text
        of its `<method>_response` (or `error_response`) value. An unsigned answer is never
        acted on: an error in it becomes a PaymentError naming the code, nothing more."""
        try:
            doc = json.loads(raw)
        except ValueError:
            raise PaymentError(f"alipay {method}: the answer is not JSON") from None
        if not isinstance(doc, dict):
            raise PaymentError(f"alipay {method}: the answer is not a JSON object")
        key = response_key(method)
        if key not in doc and "error_response" in doc:
            key = "error_response"
        content = doc.get(key)
        text = signed_content(raw, key)
        if not isinstance(content, dict) or text is None:
            raise PaymentError(f"alipay {method}: the answer has no {response_key(method)}")
        sign = doc.get("sign")
        if not isinstance(sign, str) or not sign:
            unsigned = _Answer(method, content)
            raise PaymentError(f"{unsigned.line()} (unsigned answer, not acted on)")
        if not self._verify(text, sign) and not self._verify(text.replace("\\/", "/"), sign):
            # (Alipay's own SDKs retry with "\/" unescaped: some answers escape slashes.)
            raise PaymentError(f"alipay {method}: the answer's signature does not verify")
        return _Answer(method, json.loads(text))

    def _verify(self, text: str, sign: str) -> bool:
        try:
            return bool(self._sdk._verify(text, sign))
        except (ValueError, TypeError, IndexError):  # malformed base64 or signature length
            return False

    async def _call(self, method: str, biz: dict[str, Any], *, notify: bool = False) -> _Answer:
        body = self.signed_request(method, biz, notify=notify)
        headers = {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"}
        try:
            async with self._session().post(self._gateway, data=body, headers=headers) as r:
                raw = await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise PaymentError(
                one_line(f"alipay {method}: cannot reach {self._gateway} ({type(e).__name__})", 240)
            ) from e
        if status != 200:
            raise PaymentError(f"alipay {method}: the gateway answered HTTP {status}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PaymentError(f"alipay {method}: the answer is not UTF-8") from None
        return self.verify_answer(method, text)

    # -- checkout ------------------------------------------------------------------------

    def accepts(self, currency: str) -> bool:
        return currency.upper() == CURRENCY

    async def create_checkout(self, req: CheckoutRequest) -> Checkout:
        refuse_unpayable_by_qr("alipay", "face-to-face", CURRENCY, req)
        biz: dict[str, Any] = {
            "out_trade_no": req.order_no,
            "total_amount": fen_to_yuan(req.amount_minor),
            "subject": subject(req.title, req.order_no),
        }
        if req.expires_at is not None:
            # Alipay then refuses the code after this time, even if our close never lands.
            biz["time_expire"] = shanghai_time(req.expires_at)
        answer = await self._call("alipay.trade.precreate", biz, notify=True)
        if not answer.ok:
            raise answer.error()
        qr = answer.text("qr_code")
        if not qr.startswith("https://"):
            raise PaymentError("alipay alipay.trade.precreate: qr_code is not an https URL")
        return Checkout(url=qr, provider_ref=req.order_no, shown="qr")

    async def fetch_status(self, provider_ref: str) -> CheckoutStatus:
        """The trade's state. Not scanned yet is "does not exist" at Alipay: still open."""
        answer = await self._call("alipay.trade.query", {"out_trade_no": provider_ref})
        if not answer.ok:
            if answer.sub_code == "ACQ.TRADE_NOT_EXIST":
                return CheckoutStatus("open")
            raise answer.error()
        if answer.content.get("out_trade_no") != provider_ref:
            # A signed answer about another trade (a replayed one) must not grant this order.
            raise PaymentError(f"alipay alipay.trade.query: the answer for {provider_ref} is not")
        status = answer.content.get("trade_status")
        if status in PAID_STATUSES:
            try:
                amount = yuan_to_fen(answer.content.get("total_amount"))
            except ValueError as e:
                raise PaymentError(f"alipay alipay.trade.query: {e}") from None
            return CheckoutStatus(
                "paid",
                amount_minor=amount,
                currency=CURRENCY,
                provider_payment_id=answer.text("trade_no"),
            )
        if status == "TRADE_CLOSED":
            return CheckoutStatus("expired")
        return CheckoutStatus("open")  # WAIT_BUYER_PAY

    async def expire_checkout(self, provider_ref: str) -> CheckoutStatus:
        """Close the trade. Never scanned: nothing to close (the precreate's time_expire keeps
        the code from paying), so "expired". Paid meanwhile: "paid", for the caller to grant."""
        answer = await self._call("alipay.trade.close", {"out_trade_no": provider_ref})
        if answer.ok or answer.sub_code == "ACQ.TRADE_NOT_EXIST":
            return CheckoutStatus("expired")
        if answer.sub_code == "ACQ.TRADE_STATUS_ERROR":  # paid, or closed already: which?
            return await self.fetch_status(provider_ref)
        raise answer.error()

    # -- refunds -------------------------------------------------------------------------

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
        """Refund `amount_minor` of trade `payment_id` (its trade_no); the refund's id, our
        out_request_no. The same key is the same out_request_no, which Alipay refunds once
        (a repeat answers the earlier result with fund_change N)."""
        if currency.upper() != CURRENCY:
            raise PaymentRefused(f"alipay refunds CNY, not {currency}")
        if amount_minor <= 0:  # fen_to_yuan would raise ValueError: not one of our errors
            raise PaymentRefused("refund amount must be positive")
        request_no = out_request_no(idempotency_key)
        biz = {
            "trade_no": payment_id,
            "refund_amount": fen_to_yuan(amount_minor),
            "out_request_no": request_no,
            "refund_reason": reason[:256],
        }
        answer = await self._call("alipay.trade.refund", biz)
        if not answer.ok:
            raise answer.error()
        if answer.content.get("fund_change") != "Y":
            # N: no money moved by THIS call; a repeat of a refund that went through, or one
            # still in progress. Alipay's advice: ask the refund query which.
            await self._confirm_refund(payment_id, request_no)
        try:
            self._refunded_total[request_no] = yuan_to_fen(answer.content.get("refund_fee"))
        except ValueError:
            self._refunded_total.pop(request_no, None)
        return request_no

    async def _confirm_refund(self, trade_no: str, request_no: str) -> None:
        answer = await self._call(
            "alipay.trade.fastpay.refund.query",
            {"trade_no": trade_no, "out_request_no": request_no},
        )
        if not answer.ok:
            raise answer.error()
        if answer.content.get("refund_status") != "REFUND_SUCCESS":
            raise PaymentError(f"alipay: refund {request_no} is not done yet")

    def refund_notice(
        self, payment_id: str, amount_minor: int, currency: str, refund_id: str, order_no: str
    ) -> WebhookNotice:
        """The refund our call made, recorded at once under its out_request_no: Alipay's own
        notification of it carries the same id as out_biz_no, and then changes nothing."""
        # The trade's refunded total from the call's answer (refund() ran just before, in
        # the same outbox delivery). Without it, this refund's own amount stands for it.
        total = self._refunded_total.pop(refund_id, None)
        event = PaymentEvent(
            provider=PROVIDER,
            event_id=f"refund:{refund_id}",
            event_type="alipay.trade.refund",
            kind=EventKind.REFUNDED,
            order_no=order_no,
            amount_minor=total if total is not None and total >= amount_minor else amount_minor,
            currency=currency.upper(),
            provider_payment_id=payment_id,
            provider_ref=order_no,
            reversal_id=refund_id,
            reversal_amount_minor=amount_minor,
        )
        return WebhookNotice(event.event_id, event.event_type, event)

    # -- notifications -------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        """RSA2 over every field but sign and sign_type, sorted, `k=v&...` (the SDK's verify),
        and the notification must be for our app. WebhookRejected (400, nothing stored)
        otherwise."""
        try:
            fields = read_form(body)
        except ValueError as e:
            raise WebhookRejected(str(e)) from None
        sign = fields.pop("sign", "")
        if not sign:
            raise WebhookRejected("notification has no sign")
        sign_type = fields.get("sign_type", "")
        if sign_type != "RSA2":
            raise WebhookRejected(f"sign_type {sign_type[:10]!r} is not RSA2")
        try:
            ok = self._sdk.verify(dict(fields), sign)
        except (ValueError, TypeError, IndexError):  # malformed base64 or signature length
            ok = False
        except AliPayException as e:  # the SDK's own (an unknown sign type)
            raise WebhookRejected(one_line(f"cannot verify: {e}", 240)) from None
        if not ok:
            raise WebhookRejected("bad Alipay signature")
        if fields.get("app_id") != self._app_id:
            raise WebhookRejected(
                one_line(f"notification is for app_id {fields.get('app_id', '')[:32]!r}", 240)
            )

    def parse_event(self, body: bytes) -> WebhookNotice:
        return parse_notice(body)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        self.verify_webhook(headers, body)
        return self.parse_event(body)

    def ack(self) -> WebhookAck:
        return WebhookAck(200, b"success", "text/plain")  # anything else: Alipay retries

    def refuse(self, status: int, message: str) -> WebhookAck:
        # Not `success`, so Alipay sends it again (25 hours, 8 times).
        return WebhookAck(status, b"fail", "text/plain")

    # -- config check --------------------------------------------------------------------

    async def check_keys(self) -> str:
        """Prove the keys without moving money: query an order that does not exist. A signed
        ACQ.TRADE_NOT_EXIST means Alipay took our signature and we can verify its own."""
        probe = "gatepass-keycheck-" + secrets.token_hex(6)
        answer = await self._call("alipay.trade.query", {"out_trade_no": probe})
        if answer.sub_code == "ACQ.TRADE_NOT_EXIST" or answer.ok:
            return f"alipay: the keys of app {self._app_id} are accepted at {self._gateway}"
        raise PaymentError(answer.line())
