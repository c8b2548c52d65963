"""WeChat Pay API v3, Native payments (the buyer scans a QR code): the only module, with its
two helpers (wechatpay_crypto: the SDK's signing, verification and decryption;
wechatpay_events: the notification mapping), that imports `wechatpayv3`.

The HTTP calls are aiohttp, not the SDK's `Core.request`: that is blocking `requests`, which
would stall the event loop (every webhook and Telegram update) for as long as WeChat Pay takes
to answer. Each request is signed with the SDK's `build_authorization`, and every answer's
`Wechatpay-Signature` is verified with the platform public key before it is believed, as the
SDK does for its own calls.

Our order number is the `out_trade_no`, so the checkout's reference is the order number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from billing.errors import MalformedEvent, PaymentError, PaymentRefused, WebhookRejected, one_line
from billing.events import WebhookNotice
from billing.provider import (
    Checkout,
    CheckoutRequest,
    CheckoutStatus,
    WebhookAck,
    refuse_unpayable_by_qr,
)
from billing.providers.wechatpay_crypto import SCHEMA, MerchantKeys, load_keys
from billing.providers.wechatpay_events import CURRENCY, MAPPERS, PROVIDER
from billing.raw_event import load_json_object, storable_id, storable_type
from billing.signature_header import single_header

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 30
TOLERANCE_SECONDS = 300  # a notification's timestamp must be this close to now
DESCRIPTION_MAX_BYTES = 127
CHINA = timezone(timedelta(hours=8))
_OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[0-9A-Za-z_\-]{1,64}")
_SERIAL = re.compile(r"[0-9A-Za-z_\-]{1,64}")
MAX_SIGNATURE_LENGTH = 1024  # base64 of a 2048..4096-bit RSA signature fits several times

# trade_state (query) -> our checkout state. REFUND: it was paid, then (partly) refunded.
_PAID_STATES = ("SUCCESS", "REFUND")
_OPEN_STATES = ("NOTPAY", "USERPAYING")
_ENDED_STATES = ("CLOSED", "REVOKED", "PAYERROR")
# The refund's `reason` is shown to the buyer in WeChat (at most 80 characters).
# A refund's ends (the query's `status`); PROCESSING is none of them.
_REFUND_ENDS = ("SUCCESS", "ABNORMAL", "CLOSED")
_REASONS = {"duplicate": "重复支付退款", "requested_by_customer": "商户退款"}


class _Clock(Protocol):
    def now(self) -> datetime: ...


class _UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class WechatPayRefused(PaymentRefused):
    """WeChat Pay answered 4xx with an error code (not 429): asking again will not help."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"wechatpay: {code}: {one_line(message)} (HTTP {status})")
        self.status, self.code = status, code


class WechatPayFailed(PaymentError):
    """5xx, 429, a network failure or an answer we cannot believe: it may work later."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def description(title: str) -> str:
    """The order's `description`: at most 127 bytes of UTF-8, cut on a character boundary."""
    raw = (title.strip() or "gatepass").encode("utf-8")[:DESCRIPTION_MAX_BYTES]
    return raw.decode("utf-8", errors="ignore")


def time_expire(at: datetime) -> str:
    """RFC 3339 in China time, as WeChat Pay writes it; a naive datetime is UTC."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(CHINA).isoformat(timespec="seconds")


def out_refund_no(idempotency_key: str) -> str:
    """The refund's number, from the caller's idempotency key: the same key is the same
    refund (WeChat Pay answers a repeated out_refund_no with the refund it made already).
    A key that does not fit WeChat's alphabet or 64 characters is replaced by its digest."""
    if _OUT_REFUND_NO.fullmatch(idempotency_key):
        return idempotency_key
    return "gp-" + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:48]


class WechatPayProvider:
    """`PaymentProvider` (+ `Refunder`, `RefundTracker`, `WebhookRefusal`,
    `QrPaymentProvider`) for WeChat Pay Native payments in CNY."""

    name = PROVIDER
    scan_app = "wechat"

    def __init__(
        self,
        *,
        mchid: str,
        appid: str,
        apiv3_key: str,
        private_key_path: Path,
        cert_serial_no: str,
        platform_public_key_path: Path,
        platform_public_key_id: str,
        public_url: str,
        api_base: str = "https://api.mch.weixin.qq.com",
        clock: _Clock | None = None,
    ) -> None:
        # Public-key mode: the keys are read here, once; nothing is fetched from WeChat Pay.
        self._keys: MerchantKeys = load_keys(
            mchid=mchid,
            cert_serial_no=cert_serial_no,
            private_key_path=Path(private_key_path),
            platform_public_key_path=Path(platform_public_key_path),
            platform_public_key_id=platform_public_key_id,
            apiv3_key=apiv3_key,
        )
        self._mchid, self._appid = mchid, appid
        self._api_base = api_base.rstrip("/")
        self.notify_url = f"{public_url.rstrip('/')}/webhooks/wechatpay"
        self._clock = clock or _UtcClock()
        self._http: aiohttp.ClientSession | None = None

    # -- HTTP --------------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        # Built on first use: a ClientSession wants a running event loop.
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
            )
        return self._http

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def _call(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One signed request; the answer's JSON (empty for 204) once its signature verified.
        Raises WechatPayRefused (4xx with a code) or WechatPayFailed."""
        body = (
            ""
            if payload is None
            else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        )
        headers = {
            # The signature covers this exact text (and the path with its query string).
            "Authorization": self._keys.authorization(method, path, body),
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "gatepass (aiohttp; wechatpayv3 signing)",
            "Wechatpay-Serial": self._keys.platform_key_id,
        }
        try:
            async with self._session().request(
                method,
                self._api_base + path,
                data=body.encode("utf-8") if payload is not None else None,
                headers=headers,
            ) as r:
                status, raw, answer_headers = r.status, await r.read(), r.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise WechatPayFailed(
                f"wechatpay: cannot reach {self._api_base} ({type(e).__name__})"
            ) from e
        signed = self._check_answer(status, answer_headers, raw)
        if 200 <= status < 300:
            if not signed:
                raise WechatPayFailed(f"wechatpay: unsigned answer to {method} {path}")
            return status, self._json(raw, status) if raw else {}
        data = self._json(raw, status) if raw else {}
        code = str(data["code"]) if isinstance(data.get("code"), str) else ""
        message = str(data["message"]) if isinstance(data.get("message"), str) else ""
        if status == 429 or status >= 500:
            raise WechatPayFailed(
                f"wechatpay: {code or 'error'}: {one_line(message)} (HTTP {status})", code
            )
        raise WechatPayRefused(status, code or f"HTTP_{status}", message or "no message")

    def _check_answer(self, status: int, headers: Mapping[str, str], raw: bytes) -> bool:
        """True if the answer carries a valid platform signature; raises if it carries a bad
        one. 2xx answers must be signed (as the SDK requires); an error answer that carries a
        signature is checked too, so a forged refusal is not believed either."""
        signature = headers.get("Wechatpay-Signature")
        if signature is None:
            return False
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or not self._keys.verifies(
            headers.get("Wechatpay-Serial", ""),
            headers.get("Wechatpay-Timestamp", ""),
            headers.get("Wechatpay-Nonce", ""),
            text,
            signature,
        ):
            raise WechatPayFailed(
                f"wechatpay: the answer's signature does not verify (HTTP {status}); "
                "check platform_public_key_path and platform_public_key_id"
            )
        return True

    @staticmethod
    def _json(raw: bytes, status: int) -> dict[str, Any]:
        try:
            data = json.loads(raw)
        except ValueError:
            raise WechatPayFailed(f"wechatpay: answer is not JSON (HTTP {status})") from None
        if not isinstance(data, dict):
            raise WechatPayFailed(f"wechatpay: answer is not a JSON object (HTTP {status})")
        return data

    # -- checkout ----------------------------------------------------------------------

    def accepts(self, currency: str) -> bool:
        return currency.upper() == CURRENCY

    async def create_checkout(self, req: CheckoutRequest) -> Checkout:
        refuse_unpayable_by_qr("wechatpay", "Native", CURRENCY, req)
        order: dict[str, Any] = {
            "appid": self._appid,
            "mchid": self._mchid,
            "description": description(req.title),
            "out_trade_no": req.order_no,
            "notify_url": self.notify_url,
            "amount": {"total": req.amount_minor, "currency": CURRENCY},
        }
        if req.expires_at is not None:
            order["time_expire"] = time_expire(req.expires_at)
        _, answer = await self._call("POST", "/v3/pay/transactions/native", order)
        code_url = answer.get("code_url")
        if not isinstance(code_url, str) or not code_url.startswith("weixin://"):
            raise WechatPayFailed("wechatpay: the Native order came back without a code_url")
        return Checkout(url=code_url, provider_ref=req.order_no, shown="qr")

    async def _query(self, out_trade_no: str) -> dict[str, Any]:
        path = (
            f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}"
            f"?mchid={quote(self._mchid, safe='')}"
        )
        _, tx = await self._call("GET", path)
        if tx.get("out_trade_no") != out_trade_no:
            raise WechatPayFailed(f"wechatpay: the query for {out_trade_no} answered another order")
        return tx

    @staticmethod
    def _status(tx: dict[str, Any]) -> CheckoutStatus:
        state = tx.get("trade_state")
        if state in _PAID_STATES:
            amount = tx.get("amount")
            total = amount.get("total") if isinstance(amount, dict) else None
            currency = (amount or {}).get("currency", CURRENCY) if isinstance(amount, dict) else ""
            tid = tx.get("transaction_id")
            if not isinstance(total, int) or isinstance(total, bool) or not isinstance(tid, str):
                raise WechatPayFailed("wechatpay: a paid order without amount or transaction_id")
            return CheckoutStatus(
                "paid",
                amount_minor=total,
                currency=str(currency).upper(),
                provider_payment_id=tid,
            )
        if state in _OPEN_STATES:
            return CheckoutStatus("open")
        if state in _ENDED_STATES:
            return CheckoutStatus("expired")
        raise WechatPayFailed(f"wechatpay: unknown trade_state {one_line(state, 40)!r}")

    async def fetch_status(self, provider_ref: str) -> CheckoutStatus:
        """The order's trade_state. ORDER_NOT_EXIST is an error here, not "open": a Native
        order exists at WeChat Pay from the create call on (our order has a provider_ref
        only once that call succeeded), so not finding it means the keys point at another
        merchant, or something worse; it must be looked at, not waited out."""
        return self._status(await self._query(provider_ref))

    async def expire_checkout(self, provider_ref: str) -> CheckoutStatus:
        """Close the order (POST .../close, 204), then ask what became of it: WeChat Pay
        refuses to close a paid order (ORDERPAID), so a buyer who paid first is "paid" here
        and granted. A close refused while the order is still unpaid is an error (retried
        by the next sweep); USERPAYING is "open": a payment is in flight."""
        path = f"/v3/pay/transactions/out-trade-no/{quote(provider_ref, safe='')}/close"
        refused: WechatPayRefused | None = None
        try:
            await self._call("POST", path, {"mchid": self._mchid})
        except WechatPayRefused as e:
            if e.code == "ORDER_NOT_EXIST":
                # Nothing at WeChat Pay carries this number, so nothing can be paid with it.
                return CheckoutStatus("expired")
            refused = e
        tx = await self._query(provider_ref)
        status = self._status(tx)
        if refused is not None and tx.get("trade_state") == "NOTPAY":
            raise refused
        return status

    # -- refunds -----------------------------------------------------------------------

    async def refund(
        self,
        payment_id: str,
        amount_minor: int,
        currency: str,
        *,
        idempotency_key: str,
        reason: str = "duplicate",
        buyer_ref: str = "",  # WeChat Pay knows the payer from the transaction
    ) -> str:
        """Refund `amount_minor` fen of transaction `payment_id`; the refund's id. The
        out_refund_no comes from the key, so a retried call refunds once. Raises
        PaymentRefused (NOT_ENOUGH, INVALID_REQUEST, unknown transaction...) or PaymentError
        (5xx, network, rate limit). The REFUND.SUCCESS notification settles the ledger, or,
        when it is lost, the outbox's later `refund_notice_now` query."""
        if currency.upper() != CURRENCY:
            raise PaymentRefused(f"wechatpay refunds CNY only, not {currency}")
        if amount_minor <= 0:
            raise PaymentRefused("refund amount must be positive")
        # `amount.total` must be the payment's own total: asked, not assumed.
        path = (
            f"/v3/pay/transactions/id/{quote(payment_id, safe='')}"
            f"?mchid={quote(self._mchid, safe='')}"
        )
        _, tx = await self._call("GET", path)
        total = (
            (tx.get("amount") or {}).get("total") if isinstance(tx.get("amount"), dict) else None
        )
        if not isinstance(total, int) or isinstance(total, bool):
            raise WechatPayFailed(f"wechatpay: transaction {payment_id} has no amount.total")
        _, answer = await self._call(
            "POST",
            "/v3/refund/domestic/refunds",
            {
                "transaction_id": payment_id,
                "out_refund_no": out_refund_no(idempotency_key),
                "reason": _REASONS.get(reason, one_line(reason, 80)),
                "notify_url": self.notify_url,
                "amount": {"refund": amount_minor, "total": total, "currency": CURRENCY},
            },
        )
        refund_id, status = answer.get("refund_id"), answer.get("status")
        if not isinstance(refund_id, str) or not refund_id:
            raise WechatPayFailed("wechatpay: the refund came back without a refund_id")
        if status in ("CLOSED", "ABNORMAL"):
            raise PaymentRefused(f"wechatpay: refund {refund_id} is {status}")
        return refund_id

    async def refund_notice_now(
        self,
        refund_id: str,
        idempotency_key: str,
        payment_id: str,
        amount_minor: int,
        currency: str,
        order_no: str,
    ) -> WebhookNotice | None:
        """`RefundTracker`: ask WeChat Pay how the refund made with `idempotency_key` ended
        (GET /v3/refund/domestic/refunds/{out_refund_no}), for when its REFUND.* notification
        never came. SUCCESS is the event REFUND.SUCCESS maps to (the same reversal_id, the
        refund_id: the ledger records it once); ABNORMAL / CLOSED the REFUND_FAILED one;
        PROCESSING is None. The answer is read through the notification's own mapping, so
        the two cannot disagree on what a refund means."""
        no = out_refund_no(idempotency_key)
        _, answer = await self._call("GET", f"/v3/refund/domestic/refunds/{quote(no, safe='')}")
        status = answer.get("status")
        if answer.get("out_refund_no") != no or answer.get("transaction_id") != payment_id:
            raise WechatPayFailed(f"wechatpay: the query for refund {no} answered another refund")
        if refund_id and answer.get("refund_id") != refund_id:
            raise WechatPayFailed(
                f"wechatpay: refund {no} is {answer.get('refund_id')!r}, not {refund_id}"
            )
        if status == "PROCESSING":
            return None
        mapper = MAPPERS.get(f"REFUND.{status}") if status in _REFUND_ENDS else None
        if mapper is None:
            raise WechatPayFailed(f"wechatpay: unknown refund status {one_line(status, 40)!r}")
        event_type = f"REFUND.{status}"
        # One id per refund and outcome: a second query finds it processed (a duplicate).
        event_id = f"refund-query:{answer['refund_id']}:{status}"
        # The query answers `status` where the notification says `refund_status`.
        try:
            event = mapper(event_id, event_type, {**answer, "refund_status": status})
        except Exception as e:  # a pure mapping of JSON: any failure is the answer's
            raise WechatPayFailed(
                f"wechatpay: refund {no}: unexpected shape ({type(e).__name__}: {one_line(e)})"
            ) from e
        return WebhookNotice(event_id, event_type, event)

    async def check_keys(self) -> str:
        """`config check --online`: query an order number nobody uses. ORDER_NOT_EXIST
        proves WeChat Pay accepted our signature (mchid, private key, cert_serial_no); a
        signed answer proves the platform public key too. No payment is made. Raises
        PaymentError with a one-line reason otherwise."""
        probe = "GPPROBE" + hashlib.sha256(self._mchid.encode()).hexdigest()[:12].upper()
        try:
            await self._query(probe)
        except WechatPayRefused as e:
            if e.code != "ORDER_NOT_EXIST":
                raise
            return "the merchant key is accepted (a query for no order answered ORDER_NOT_EXIST)"
        return "the merchant key is accepted"

    # -- webhooks ----------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        """The platform's signature over `timestamp\\nnonce\\nbody\\n`, by the key that
        Wechatpay-Serial names, sent within 5 minutes of now; WebhookRejected otherwise."""
        signature = single_header(headers, "Wechatpay-Signature")
        timestamp = single_header(headers, "Wechatpay-Timestamp")
        nonce = single_header(headers, "Wechatpay-Nonce")
        serial = single_header(headers, "Wechatpay-Serial")
        kind = [v for k, v in headers.items() if k.lower() == "wechatpay-signature-type"]
        if kind and kind != [SCHEMA]:
            raise WebhookRejected(f"Wechatpay-Signature-Type is not {SCHEMA}")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise WebhookRejected("Wechatpay-Timestamp is not a unix time")
        if not _NONCE.fullmatch(nonce):
            raise WebhookRejected("Wechatpay-Nonce is not a nonce")
        if not _SERIAL.fullmatch(serial):
            raise WebhookRejected("Wechatpay-Serial is not a key id")
        if not signature or len(signature) > MAX_SIGNATURE_LENGTH or not signature.isascii():
            raise WebhookRejected("Wechatpay-Signature is not a base64 signature")
        if serial != self._keys.platform_key_id:
            raise WebhookRejected(
                f"Wechatpay-Serial {serial} is not the configured platform_public_key_id"
            )
        age = self._clock.now().timestamp() - int(timestamp)
        if abs(age) > TOLERANCE_SECONDS:
            raise WebhookRejected(
                f"Wechatpay-Timestamp is {abs(age):.0f} s {'old' if age > 0 else 'ahead'}"
                f" (at most {TOLERANCE_SECONDS} s): a replay or a wrong clock"
            )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookRejected("body is not UTF-8, so it cannot be verified") from None
        if not self._keys.verifies(serial, timestamp, nonce, text, signature):
            raise WebhookRejected("bad WeChat Pay signature")

    def parse_event(self, body: bytes) -> WebhookNotice:
        """A verified notification, decrypted; MalformedEvent if it cannot be read."""
        data = load_json_object(body)
        event_id, event_type = storable_id(data.get("id")), storable_type(data.get("event_type"))
        if event_id is None or event_type is None:
            raise MalformedEvent(
                "body is not a WeChat Pay notification with an id and an event_type"
            )
        resource = data.get("resource")
        if data.get("resource_type") != "encrypt-resource" or not isinstance(resource, dict):
            raise MalformedEvent(f"{event_type} has no encrypted resource", event_id, event_type)
        try:
            plain = self._keys.decrypt(resource)
        except ValueError as e:
            raise MalformedEvent(f"{event_type}: {e}", event_id, event_type) from None
        mapper = MAPPERS.get(event_type)
        if mapper is None:
            return WebhookNotice(event_id, event_type, None)
        # Every transaction and refund resource names its merchant (and a transaction its
        # appid): one that names none is not known to be ours, so it is not applied.
        if plain.get("mchid") != self._mchid:
            raise MalformedEvent(
                f"{event_type} is for another merchant (or names none)", event_id, event_type
            )
        if event_type.startswith("TRANSACTION.") and plain.get("appid") != self._appid:
            raise MalformedEvent(
                f"{event_type} is for another appid (or names none)", event_id, event_type
            )
        try:
            event = mapper(event_id, event_type, plain)
        except Exception as e:  # a pure mapping of JSON: any failure is the body's
            raise MalformedEvent(
                f"{event_type}: unexpected shape ({type(e).__name__}: {one_line(e)})",
                event_id,
                event_type,
            ) from e
        return WebhookNotice(event_id, event_type, event)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        self.verify_webhook(headers, body)
        return self.parse_event(body)

    def ack(self) -> WebhookAck:
        # WeChat Pay reads 200 or 204 as received; no body is needed.
        return WebhookAck(204, b"", "application/json")

    def refuse(self, status: int, message: str) -> WebhookAck:
        """A failed notification in WeChat Pay's shape: it retries on any non-2xx."""
        body = json.dumps({"code": "FAIL", "message": one_line(message)}, ensure_ascii=False)
        return WebhookAck(status, body.encode("utf-8"), "application/json")
