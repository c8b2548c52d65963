"""Alipay's wire formats, without the SDK: yuan strings <-> fen, the gateway's signed answer,
the form-encoded notification, and the notification as a provider-neutral event.

Kept apart from billing/providers/alipay_provider.py (which owns the SDK and the HTTP) so
each piece is small and testable on its own; nothing here signs or verifies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import parse_qsl

from billing.errors import InvalidEvent, MalformedEvent
from billing.events import MAX_AMOUNT_MINOR, EventKind, PaymentEvent, WebhookNotice
from billing.raw_event import storable_id, storable_type

PROVIDER = "alipay"
CURRENCY = "CNY"  # Alipay face-to-face charges in yuan only

# China has kept UTC+8 all year since 1991: a fixed offset needs no tz database.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # Alipay's timestamp / time_expire / gmt_* fields

# Alipay amounts: "Number(11,2)", yuan with at most two decimals ("9.9" and "9.90" alike).
_YUAN = re.compile(r"\A(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?\Z")

PAID_STATUSES = ("TRADE_SUCCESS", "TRADE_FINISHED")
# A notification carrying any of these reports a refund (Alipay sends refunds to the trade's
# notify_url: partial ones keep trade_status TRADE_SUCCESS, a full one says TRADE_CLOSED).
REFUND_MARKERS = ("refund_fee", "gmt_refund", "out_biz_no")


# -- money -------------------------------------------------------------------------------------


def yuan_to_fen(text: object) -> int:
    """An Alipay amount ("9.90") as fen, exactly; ValueError for anything else (a float, an
    exponent, a sign, more than two decimals, more than the ledger stores)."""
    if not isinstance(text, str) or not _YUAN.match(text):
        shown = text[:20] if isinstance(text, str) else type(text).__name__
        raise ValueError(f"amount {shown!r} is not yuan with at most two decimals")
    fen = Decimal(text) * 100
    if fen != fen.to_integral_value():  # cannot happen after the pattern; kept as the rule
        raise ValueError(f"amount {text!r} is not a whole number of fen")
    value = int(fen)
    if value > MAX_AMOUNT_MINOR:
        raise ValueError(f"amount {text!r} is larger than the ledger stores")
    return value


def fen_to_yuan(fen: int) -> str:
    """fen as Alipay's two-decimal yuan string (990 -> "9.90"), exactly, never via float."""
    if not isinstance(fen, int) or isinstance(fen, bool) or fen < 0:
        raise ValueError(f"amount {fen!r} is not a whole number of fen")
    return f"{fen // 100}.{fen % 100:02d}"


def shanghai_time(when: datetime) -> str:
    """A time as Alipay writes it: Beijing time, seconds; a naive time is taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(SHANGHAI).strftime(TIME_FORMAT)


# -- the gateway's answer --------------------------------------------------------------------


def response_key(method: str) -> str:
    """alipay.trade.query -> alipay_trade_query_response."""
    return method.replace(".", "_") + "_response"


def signed_content(raw: str, key: str) -> str | None:
    """The exact text of `key`'s JSON object value in the answer `raw`: what Alipay signed.

    Alipay signs the bytes it wrote, so the value is cut out of the raw text rather than
    re-serialized (key order, spacing and escapes would differ). The JSON decoder finds where
    the value ends, braces inside strings included (the SDK's own brace counter does not)."""
    decoder = json.JSONDecoder()
    at = 0
    needle = json.dumps(key)
    while (found := raw.find(needle, at)) >= 0:
        at = found + len(needle)
        rest = len(raw) - len(raw[at:].lstrip())
        if rest < len(raw) and raw[rest] == ":":
            start = len(raw) - len(raw[rest + 1 :].lstrip())
            try:
                value, end = decoder.raw_decode(raw, start)
            except ValueError:
                return None
            return raw[start:end] if isinstance(value, dict) else None
    return None


# -- the notification ------------------------------------------------------------------------


def read_form(body: bytes) -> dict[str, str]:
    """A notification body (application/x-www-form-urlencoded, UTF-8) as its fields; ValueError
    if it is not one: not ASCII on the wire, badly escaped, not UTF-8 once unescaped, a field
    given twice, or a charset other than the UTF-8 we ask for (Alipay signs the text in the
    request's charset, and sends GBK only to those who asked for it)."""
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=True, encoding="utf-8", errors="strict"
        )
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"body is not a UTF-8 form ({type(e).__name__})") from None
    fields: dict[str, str] = {}
    for k, v in pairs:
        if k in fields:
            raise ValueError(f"field {k[:40]!r} is given twice")
        fields[k] = v
    charset = fields.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ValueError(f"charset {charset[:20]!r} is not utf-8 (we ask Alipay for utf-8)")
    return fields


def _need(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name)
    if not value:
        raise ValueError(f"{name} is missing")
    return value


def notice_type(fields: Mapping[str, str]) -> str:
    """What kind of notification this is, for the record: e.g. trade_status_sync.TRADE_SUCCESS,
    or trade_status_sync.refund."""
    kind = "refund" if is_refund(fields) else fields.get("trade_status") or "unknown"
    return f"{fields.get('notify_type') or 'notify'}.{kind}"[:64]


def is_refund(fields: Mapping[str, str]) -> bool:
    return any(fields.get(k) for k in REFUND_MARKERS)


def _paid(event_id: str, event_type: str, f: Mapping[str, str]) -> PaymentEvent:
    return PaymentEvent(
        provider=PROVIDER,
        event_id=event_id,
        event_type=event_type,
        kind=EventKind.PAID,
        order_no=_need(f, "out_trade_no"),
        amount_minor=yuan_to_fen(_need(f, "total_amount")),
        currency=CURRENCY,
        # TRADE_SUCCESS and a later TRADE_FINISHED name the same trade_no: the ledger stores
        # that money once and grants once.
        provider_payment_id=_need(f, "trade_no"),
        provider_ref=_need(f, "out_trade_no"),
    )


def _refunded(event_id: str, event_type: str, f: Mapping[str, str]) -> PaymentEvent:
    return PaymentEvent(
        provider=PROVIDER,
        event_id=event_id,
        event_type=event_type,
        kind=EventKind.REFUNDED,
        order_no=_need(f, "out_trade_no"),
        # refund_fee is everything refunded on the trade so far; the ledger takes this step
        # as what is not on record yet (and dedupes on out_biz_no first).
        amount_minor=yuan_to_fen(_need(f, "refund_fee")),
        currency=CURRENCY,
        provider_payment_id=_need(f, "trade_no"),
        provider_ref=_need(f, "out_trade_no"),
        # Our out_request_no: the id our own RefundSettler notice records the refund under.
        reversal_id=_need(f, "out_biz_no"),
        payment_amount_minor=yuan_to_fen(_need(f, "total_amount")),
    )


def parse_notice(body: bytes) -> WebhookNotice:
    """A verified (or stored) notification as a notice; MalformedEvent if it cannot be used.
    Payments (TRADE_SUCCESS, TRADE_FINISHED) grant; refunds reverse, never grant; other
    states (WAIT_BUYER_PAY, TRADE_CLOSED without a refund) are recorded with no event."""
    try:
        fields = read_form(body)
    except ValueError as e:
        raise MalformedEvent(str(e)) from None
    event_id, event_type = storable_id(fields.get("notify_id")), storable_type(notice_type(fields))
    if event_id is None or event_type is None:
        raise MalformedEvent("notification has no usable notify_id", event_id, event_type)
    status = fields.get("trade_status")
    try:
        if is_refund(fields):
            event: PaymentEvent | None = _refunded(event_id, event_type, fields)
        elif status in PAID_STATUSES:
            event = _paid(event_id, event_type, fields)
        else:
            event = None
    except (ValueError, InvalidEvent) as e:
        raise MalformedEvent(f"{event_type}: {e}", event_id, event_type) from None
    return WebhookNotice(event_id, event_type, event)
