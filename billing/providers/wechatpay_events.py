"""WeChat Pay notifications (decrypted `resource` objects) as provider-neutral events.

A pure mapping of JSON, dispatched on `event_type` through a dict, as Stripe's is:
- TRANSACTION.SUCCESS with trade_state SUCCESS: the order is paid (PAID);
- REFUND.SUCCESS: money went back (REFUNDED, named by the refund's own id);
- REFUND.ABNORMAL / REFUND.CLOSED: the refund did not happen; no money moved (REFUND_FAILED:
  the owner hears it, and may ask again).
Anything else is recorded with no event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from billing.events import EventKind, PaymentEvent

PROVIDER = "wechatpay"
CURRENCY = "CNY"

log = logging.getLogger(__name__)

_Mapper = Callable[[str, str, dict[str, Any]], PaymentEvent | None]


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} is missing or not text")
    return value


def _fen(amount: dict[str, Any], key: str) -> int:
    value = amount.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"amount.{key} {value!r} is not an integer number of fen")
    return value


def _amount(obj: dict[str, Any]) -> dict[str, Any]:
    amount = obj.get("amount")
    if not isinstance(amount, dict):
        raise ValueError("amount is missing")
    return amount


def _currency(amount: dict[str, Any]) -> str:
    # Refund notifications carry no currency: WeChat Pay (domestic) settles in CNY only.
    cur = amount.get("currency", CURRENCY)
    if not isinstance(cur, str):
        raise ValueError(f"amount.currency {cur!r}")
    return cur.upper()


def transaction_paid(event_id: str, event_type: str, tx: dict[str, Any]) -> PaymentEvent | None:
    """TRANSACTION.SUCCESS: trade_state SUCCESS is a payment; any other state (WeChat sends
    this type for successes only, but a state is a state) is recorded without an event."""
    state = tx.get("trade_state")
    if state != "SUCCESS":
        log.info("wechatpay %s: trade_state %r, nothing to apply", event_id, state)
        return None
    amount = _amount(tx)
    order_no = _text(tx, "out_trade_no")
    return PaymentEvent(
        provider=PROVIDER,
        event_id=event_id,
        event_type=event_type,
        kind=EventKind.PAID,
        order_no=order_no,
        amount_minor=_fen(amount, "total"),
        currency=_currency(amount),
        provider_payment_id=_text(tx, "transaction_id"),
        provider_ref=order_no,
    )


def refund_succeeded(event_id: str, event_type: str, rf: dict[str, Any]) -> PaymentEvent | None:
    """REFUND.SUCCESS: `amount.refund` went back to the buyer out of the payment's
    `amount.total`. The notification names this refund only (not the running total), so the
    refund's own id is its dedupe key and its amount is this step's."""
    if rf.get("refund_status") != "SUCCESS":
        log.warning(
            "wechatpay %s: %s with refund_status %r", event_id, event_type, rf.get("refund_status")
        )
        return None
    return _refund_event(event_id, event_type, EventKind.REFUNDED, rf)


def refund_failed(event_id: str, event_type: str, rf: dict[str, Any]) -> PaymentEvent | None:
    """REFUND.ABNORMAL (the buyer's account cannot take it: the merchant must act in the
    WeChat Pay console) or REFUND.CLOSED: no money moved. The ledger lets the owner know
    and clears the charge's "refund requested" mark (REFUND_FAILED): the refund call had
    answered PROCESSING, so nothing else would ever say it failed."""
    log.warning(
        "wechatpay refund %s (%s) of order %s: %s; no money moved, see the WeChat Pay console",
        rf.get("refund_id"),
        rf.get("out_refund_no"),
        rf.get("out_trade_no"),
        event_type,
    )
    return _refund_event(event_id, event_type, EventKind.REFUND_FAILED, rf)


def _refund_event(
    event_id: str, event_type: str, kind: EventKind, rf: dict[str, Any]
) -> PaymentEvent:
    """A refund resource as the ledger's event of `kind`: named by the refund's own id, its
    amount this refund's (`amount.refund`), the payment's whole (`amount.total`) beside it."""
    amount = _amount(rf)
    refund = _fen(amount, "refund")
    return PaymentEvent(
        provider=PROVIDER,
        event_id=event_id,
        event_type=event_type,
        kind=kind,
        order_no=_text(rf, "out_trade_no"),
        amount_minor=refund,
        currency=_currency(amount),
        provider_payment_id=_text(rf, "transaction_id"),
        reversal_id=_text(rf, "refund_id"),
        reversal_amount_minor=refund,
        payment_amount_minor=_fen(amount, "total"),
    )


MAPPERS: dict[str, _Mapper] = {
    "TRANSACTION.SUCCESS": transaction_paid,
    "REFUND.SUCCESS": refund_succeeded,
    "REFUND.ABNORMAL": refund_failed,
    "REFUND.CLOSED": refund_failed,
}
