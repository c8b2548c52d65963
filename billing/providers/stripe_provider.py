"""Stripe Checkout: the only module that imports the `stripe` SDK.

Calls go through a `StripeClient` on aiohttp, pointed at `api_base` (the real API, or the
local host in sandbox/stripe_host.py). Webhooks are verified on the raw bytes with the SDK's
own signature check, then read as plain JSON and mapped to provider-neutral `PaymentEvent`s
through a dict of small functions, one per event type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import stripe

from billing.errors import MalformedEvent, PaymentError, PaymentRefused, WebhookRejected, one_line
from billing.events import EventKind, PaymentEvent, WebhookNotice
from billing.provider import Checkout, CheckoutRequest, CheckoutStatus, WebhookAck
from billing.raw_event import load_json_object, storable_id, storable_type
from billing.signature_header import parse_signature_header, single_header

PROVIDER = "stripe"
SIGNATURE_HEADER = "stripe-signature"
REQUEST_TIMEOUT_SECONDS = 30

# Presentment currencies Stripe charges in (https://docs.stripe.com/currencies). Not XTR.
STRIPE_CURRENCIES = frozenset(
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BWP "
    "BYN BZD CAD CDF CHF CLP CNY COP CRC CVE CZK DJF DKK DOP DZD EGP ETB EUR FJD FKP GBP GEL "
    "GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR ISK JMD JOD JPY KES KGS KHR KMF KRW KWD "
    "KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MUR MVR MWK MXN MYR MZN NAD NGN "
    "NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SEK SGD "
    "SHP SLE SOS SRD STD SZL THB TJS TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VND VUV WST "
    "XAF XCD XOF XPF YER ZAR ZMW".split()
)


class _Clock(Protocol):
    def now(self) -> datetime: ...


class _UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def recurring_interval(duration_days: int | None) -> dict[str, Any]:
    """The plan's period as Stripe's `recurring` price data."""
    if duration_days is None or duration_days <= 0:
        raise PaymentError("a subscription needs a billing period in days")
    if duration_days in (30, 31):
        return {"interval": "month", "interval_count": 1}
    if duration_days in (365, 366):
        return {"interval": "year", "interval_count": 1}
    if duration_days % 30 == 0:
        return {"interval": "month", "interval_count": duration_days // 30}
    return {"interval": "day", "interval_count": duration_days}


def _one_line(text: str | None, limit: int = 200) -> str:
    """billing.errors.one_line, in ASCII (Stripe's messages are English)."""
    return one_line(str(text or "").encode("ascii", "replace").decode(), limit)


def _short(err: stripe.StripeError) -> str:
    """One short line from an SDK error, with no secrets (Stripe masks keys already)."""
    if isinstance(err, stripe.AuthenticationError):
        text = "stripe rejected the API key"
    elif isinstance(err, stripe.APIConnectionError):
        text = "cannot reach the Stripe API"
    elif isinstance(err, stripe.RateLimitError):
        text = "stripe rate limit hit"
    else:
        error = getattr(err, "error", None)
        message = getattr(error, "message", None) or err.user_message or type(err).__name__
        param = getattr(error, "param", None)
        status = f" (HTTP {err.http_status})" if err.http_status else ""
        text = f"stripe: {message}{status}" + (f" [param {param}]" if param else "")
    text = " ".join(text.split())
    return text if len(text) <= 240 else text[:237] + "..."


class StripeProvider:
    """`PaymentProvider` for Stripe Checkout (one-time payments and subscriptions)."""

    name = PROVIDER

    def __init__(
        self,
        secret_key: str,
        webhook_secret: str,
        api_base: str = "https://api.stripe.com",
        clock: _Clock | None = None,
        *,
        checkout_ttl: timedelta | None = None,
    ) -> None:
        self._secret_key = secret_key
        self._webhook_secret = webhook_secret
        self._api_base = api_base.rstrip("/")
        self._clock = clock or _UtcClock()
        # Stripe allows 30 min .. 24 h; None keeps Stripe's default of 24 h.
        self._checkout_ttl = checkout_ttl
        self._http: stripe.AIOHTTPClient | None = None
        self._client: stripe.StripeClient | None = None

    # -- client lifecycle --------------------------------------------------------------

    def _api(self) -> stripe.StripeClient:
        # Built on first use: AIOHTTPClient's session wants a running event loop.
        if self._client is None:
            self._http = stripe.AIOHTTPClient(timeout=REQUEST_TIMEOUT_SECONDS)
            self._client = stripe.StripeClient(
                self._secret_key,
                base_addresses={"api": self._api_base},
                http_client=self._http,
            )
        return self._client

    async def close(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close_async()

    # -- checkout ----------------------------------------------------------------------

    def accepts(self, currency: str) -> bool:
        return currency.upper() in STRIPE_CURRENCIES

    async def create_checkout(self, req: CheckoutRequest) -> Checkout:
        if not self.accepts(req.currency):
            raise PaymentError(f"stripe does not accept {req.currency}")
        if req.amount_minor <= 0:
            raise PaymentError("amount must be positive")
        price_data: dict[str, Any] = {
            "currency": req.currency.lower(),
            "unit_amount": req.amount_minor,
            "product_data": {"name": req.title},
        }
        order_meta = {"order_no": req.order_no}
        params: dict[str, Any] = {
            "mode": "subscription" if req.recurring else "payment",
            "line_items": [{"price_data": price_data, "quantity": 1}],
            "client_reference_id": req.order_no,
            # order_no last: caller metadata must not overwrite the key we match on.
            "metadata": {"customer_ref": req.customer_ref, **req.metadata, **order_meta},
            "success_url": req.success_url,
            "cancel_url": req.cancel_url,
        }
        if req.recurring:
            price_data["recurring"] = recurring_interval(req.duration_days)
            # Copied onto the subscription and its invoices, so renewals name the order.
            params["subscription_data"] = {"metadata": order_meta}
        else:
            # Copied onto the payment intent and its charge, so refunds name the order.
            params["payment_intent_data"] = {"metadata": order_meta}
        if self._checkout_ttl is not None:
            params["expires_at"] = int((self._clock.now() + self._checkout_ttl).timestamp())
        try:
            session = await self._api().v1.checkout.sessions.create_async(
                params,  # type: ignore[arg-type]
                # A retried create for the same order gets the same session back.
                {"idempotency_key": f"gatepass-checkout-{req.order_no}"},
            )
        except stripe.StripeError as e:
            raise PaymentError(_short(e)) from e
        if not session.url or not session.id:
            raise PaymentError("stripe returned a checkout session without a url")
        return Checkout(url=session.url, provider_ref=session.id)

    async def _retrieve_session(self, provider_ref: str) -> dict[str, Any]:
        try:
            session = await self._api().v1.checkout.sessions.retrieve_async(provider_ref)
        except stripe.StripeError as e:
            raise PaymentError(_short(e)) from e
        return session.to_dict()

    async def fetch_status(self, provider_ref: str) -> CheckoutStatus:
        """The Checkout Session's state (reconciliation): "paid" carries the same amount and
        payment id that its checkout.session.completed webhook would."""
        return session_status(await self._retrieve_session(provider_ref))

    async def expire_checkout(self, provider_ref: str) -> CheckoutStatus:
        """Close an open session. Returns "expired", or the state that kept it from closing:
        "paid" if the buyer paid in the meantime (the caller grants instead), "open" if it is
        complete with a delayed payment (bank debit) still in flight."""
        try:
            session = await self._api().v1.checkout.sessions.expire_async(provider_ref)
            return session_status(session.to_dict())
        except stripe.InvalidRequestError as e:
            if e.http_status != 400:
                raise PaymentError(_short(e)) from e
            current = await self._retrieve_session(provider_ref)  # not open any more: why?
            if current.get("status") == "open":
                raise PaymentError(_short(e)) from e
            return session_status(current)
        except stripe.StripeError as e:
            raise PaymentError(_short(e)) from e

    async def cancel_subscription_at_period_end(
        self, subscription_id: str, *, buyer_ref: str = ""
    ) -> None:
        try:
            await self._api().v1.subscriptions.update_async(
                subscription_id, {"cancel_at_period_end": True}
            )
        except stripe.InvalidRequestError as e:  # no such subscription, already canceled
            raise PaymentRefused(_short(e)) from e
        except stripe.StripeError as e:
            raise PaymentError(_short(e)) from e

    async def refund(
        self,
        payment_id: str,
        amount_minor: int,
        currency: str,
        *,
        idempotency_key: str,
        reason: str = "duplicate",
        buyer_ref: str = "",  # Stripe knows the customer from the payment
    ) -> str:
        """Refund `amount_minor` of a payment we recorded: a payment intent, a charge, or a
        subscription's invoice (whose payment intent Stripe's InvoicePayment names). Returns
        the refund's id. The key makes a retried call (outbox, SDK) refund once.

        Raises PaymentRefused when Stripe says no for good (no such payment, disputed, more
        than is left), PaymentError when it may work later (5xx, network, rate limit). A
        payment refunded in full already is what was wanted: that answers "already"."""
        params: dict[str, Any] = {
            "amount": amount_minor,
            "reason": reason,
            "metadata": {"gatepass_refund": idempotency_key},
        }
        try:
            if payment_id.startswith("in_"):
                page = await self._api().v1.invoice_payments.list_async(
                    {"invoice": payment_id, "limit": 10}
                )
                intents = [
                    pi
                    for ip in page.data
                    if (pi := _id((ip.to_dict().get("payment") or {}).get("payment_intent")))
                ]
                if not intents:
                    raise PaymentRefused(f"stripe: invoice {payment_id} has no payment to refund")
                params["payment_intent"] = intents[0]
            elif payment_id.startswith(("ch_", "py_")):
                params["charge"] = payment_id
            elif payment_id.startswith("pi_"):
                params["payment_intent"] = payment_id
            else:
                raise PaymentRefused(f"stripe: {payment_id} is not a payment Stripe can refund")
            refund = await self._api().v1.refunds.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as e:
            if e.code == "charge_already_refunded":
                return "already"
            if (e.http_status or 0) >= 500 or e.http_status == 409:
                raise PaymentError(_short(e)) from e  # 409: the same key in flight
            raise PaymentRefused(_short(e)) from e
        except stripe.StripeError as e:
            raise PaymentError(_short(e)) from e
        return str(refund.id)

    # -- webhooks ----------------------------------------------------------------------

    async def resolve(self, notice: WebhookNotice) -> WebhookNotice:
        """Complete a verified notice with what only the API knows, before its transaction.

        A refund or dispute of a subscription's payment names neither its order (the charge
        carries no order metadata) nor its invoice (2025 API versions dropped
        `charge.invoice`). Stripe's InvoicePayment links the payment intent to the invoice,
        and the invoice is what our payment row was recorded under, so the reversal finds
        its order. A failed lookup raises PaymentError: the webhook answers 500, Stripe
        sends it again."""
        e = notice.event
        if (
            e is None
            or e.kind not in REVERSALS
            or e.order_no
            or not (e.provider_payment_id or "").startswith("pi_")
            or any(r.startswith("in_") for r in e.payment_refs)
        ):
            return notice
        try:
            page = await self._api().v1.invoice_payments.list_async(
                {
                    "payment": {
                        "type": "payment_intent",
                        "payment_intent": e.provider_payment_id or "",
                    },
                    "limit": 10,
                }
            )
        except stripe.StripeError as err:
            raise PaymentError(_short(err)) from err
        invoices = tuple(i for ip in page.data if (i := _id(ip.to_dict().get("invoice"))))
        if not invoices:
            return notice  # a one-time payment: its payment intent is on record already
        return replace(notice, event=replace(e, payment_refs=(*e.payment_refs, *invoices)))

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        """Signature and age on the raw bytes (the SDK's own check); WebhookRejected (400,
        nothing stored) if not. The header is read strictly first: the SDK answers some
        malformed headers with exceptions of its own (non-ASCII, huge timestamps)."""
        signature = single_header(headers, "Stripe-Signature")
        parse_signature_header(signature, "Stripe-Signature")
        try:
            stripe.WebhookSignature.verify_header(
                body, signature, self._webhook_secret, stripe.Webhook.DEFAULT_TOLERANCE
            )
        except stripe.SignatureVerificationError as e:
            raise WebhookRejected(f"bad Stripe signature: {_one_line(e.user_message)}") from e
        except UnicodeDecodeError as e:
            # Stripe signs the body's UTF-8 text: other bytes cannot carry its signature.
            raise WebhookRejected("body is not UTF-8, so it cannot be verified") from e

    def parse_event(self, body: bytes) -> WebhookNotice:
        """A verified body as a notice; MalformedEvent if it is not a usable Stripe event.
        Also the replay path, on a body verified when it was stored."""
        event = load_json_object(body)
        event_id, event_type = storable_id(event.get("id")), storable_type(event.get("type"))
        if event.get("object") != "event" or event_id is None or event_type is None:
            raise MalformedEvent(
                "body is not a Stripe event with an id and a type", event_id, event_type
            )
        data = event.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict):
            raise MalformedEvent(f"{event_type} has no data.object", event_id, event_type)
        mapper = _MAPPERS.get(event_type)
        if mapper is None:
            return WebhookNotice(event_id, event_type, None)
        try:
            payment_event = mapper(event_id, event_type, obj)
        except Exception as e:  # a pure mapping of JSON: any failure is the body's
            # Signed but not the shape we expect (API version drift, or a bug of ours): kept
            # raw with this error, so `gatepass webhooks replay` can apply it after a fix.
            where = storable_id(obj.get("id")) or "object"
            raise MalformedEvent(
                f"{event_type} {where}: unexpected shape ({type(e).__name__}: {_one_line(str(e))})",
                event_id,
                event_type,
            ) from e
        return WebhookNotice(event_id, event_type, payment_event)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        self.verify_webhook(headers, body)
        return self.parse_event(body)

    def ack(self) -> WebhookAck:
        return WebhookAck(200, b'{"received": true}', "application/json")


# -- event mapping (plain dicts of the API's JSON) ---------------------------------------

# Events that reverse (or give back) a payment and may need resolve() to find their order.
REVERSALS = (EventKind.REFUNDED, EventKind.DISPUTED, EventKind.DISPUTE_CLOSED)

_PAID_STATUSES = ("paid", "no_payment_required")
_Mapper = Callable[[str, str, dict[str, Any]], PaymentEvent | None]


def _id(value: Any) -> str | None:
    """An id field, which Stripe sends as a string or, when expanded, as an object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _meta(*sources: Any) -> str | None:
    """The first order_no found in the given metadata dicts."""
    for meta in sources:
        if isinstance(meta, dict) and isinstance(meta.get("order_no"), str) and meta["order_no"]:
            return str(meta["order_no"])
    return None


def _amount(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"amount {value!r} is not an integer")
    return value


def _currency(obj: dict[str, Any]) -> str:
    cur = obj["currency"]
    if not isinstance(cur, str) or len(cur) != 3:
        raise ValueError(f"currency {cur!r}")
    return cur.upper()


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _utc(ts: Any) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if isinstance(ts, int) and ts > 0 else None


def _session_payment_id(s: dict[str, Any]) -> str:
    # A subscription session has no payment intent; its first invoice is the payment,
    # the same id that invoice.paid for that invoice carries.
    return str(
        _id(s.get("payment_intent"))
        or _id(s.get("invoice"))
        or _id(s.get("subscription"))
        or s["id"]
    )


def session_status(s: dict[str, Any]) -> CheckoutStatus:
    """A Checkout Session (as JSON) as a provider-neutral CheckoutStatus."""
    if s.get("status") == "expired":
        return CheckoutStatus("expired")
    if s.get("status") == "complete" and s.get("payment_status") in _PAID_STATUSES:
        return CheckoutStatus(
            "paid",
            amount_minor=_amount(s["amount_total"]),
            currency=_currency(s),
            provider_payment_id=_session_payment_id(s),
            subscription_id=_id(s.get("subscription")),
        )
    return CheckoutStatus("open")  # open, or complete with a delayed payment still pending


def _session_event(kind: EventKind) -> _Mapper:
    def mapper(event_id: str, event_type: str, s: dict[str, Any]) -> PaymentEvent | None:
        if kind is EventKind.PAID and s.get("payment_status") not in _PAID_STATUSES:
            return None  # e.g. bank debits: wait for checkout.session.async_payment_succeeded
        order_no = s.get("client_reference_id") or _meta(s.get("metadata"))
        return PaymentEvent(
            provider=PROVIDER,
            event_id=event_id,
            event_type=event_type,
            kind=kind,
            order_no=order_no,
            amount_minor=_amount(s["amount_total"]),
            currency=_currency(s),
            provider_payment_id=_session_payment_id(s),
            provider_ref=s["id"],
            subscription_id=_id(s.get("subscription")),
        )

    return mapper


def _invoice_event(kind: EventKind) -> _Mapper:
    def mapper(event_id: str, event_type: str, inv: dict[str, Any]) -> PaymentEvent | None:
        parent = inv.get("parent") or {}
        details = parent.get("subscription_details") or inv.get("subscription_details") or {}
        lines = (inv.get("lines") or {}).get("data") or []
        order_no = _meta(
            details.get("metadata"), inv.get("metadata"), *(ln.get("metadata") for ln in lines)
        )
        ends = [p["end"] for ln in lines if isinstance(p := ln.get("period"), dict)]
        amount = inv["amount_paid"] if kind is EventKind.RENEWED else inv["amount_due"]
        return PaymentEvent(
            provider=PROVIDER,
            event_id=event_id,
            event_type=event_type,
            kind=kind,
            order_no=order_no,
            amount_minor=_amount(amount),
            currency=_currency(inv),
            provider_payment_id=inv["id"],
            subscription_id=_id(details.get("subscription")) or _id(inv.get("subscription")),
            period_end=_utc(max(ends)) if ends else None,
            action_url=_str(inv.get("hosted_invoice_url")),
            first_period=inv.get("billing_reason") == "subscription_create",
            payment_refs=tuple(
                i for i in (_id(inv.get("payment_intent")), _id(inv.get("charge"))) if i
            ),
        )

    return mapper


def _subscription_event(kind: EventKind) -> _Mapper:
    def mapper(event_id: str, event_type: str, sub: dict[str, Any]) -> PaymentEvent | None:
        items = (sub.get("items") or {}).get("data") or []
        # current_period_end moved from the subscription onto its items in 2025 API versions.
        ends = [i["current_period_end"] for i in items if i.get("current_period_end")]
        period_end = sub.get("current_period_end") or (max(ends) if ends else None)
        amount = sum(
            ((i.get("price") or {}).get("unit_amount") or 0) * (i.get("quantity") or 1)
            for i in items
        )
        return PaymentEvent(
            provider=PROVIDER,
            event_id=event_id,
            event_type=event_type,
            kind=kind,
            order_no=_meta(sub.get("metadata")),
            amount_minor=_amount(amount),
            currency=_currency(sub),
            provider_payment_id=None,
            subscription_id=sub["id"],
            period_end=_utc(period_end),
            # Newer API versions may set only cancel_at for "cancel at the period's end".
            cancel_at_period_end=bool(sub.get("cancel_at_period_end"))
            or sub.get("cancel_at") is not None,
        )

    return mapper


def _latest_refund(ch: dict[str, Any]) -> dict[str, Any] | None:
    """The newest refund listed on the charge (API versions that still embed `refunds`)."""
    refunds = [r for r in (ch.get("refunds") or {}).get("data") or [] if isinstance(r, dict)]
    return max(refunds, key=lambda r: r.get("created") or 0) if refunds else None


def _charge_refunded(event_id: str, event_type: str, ch: dict[str, Any]) -> PaymentEvent:
    total_refunded = _amount(ch["amount_refunded"])
    refund = _latest_refund(ch)
    return PaymentEvent(
        provider=PROVIDER,
        event_id=event_id,
        event_type=event_type,
        kind=EventKind.REFUNDED,
        order_no=_meta(ch.get("metadata")),
        amount_minor=total_refunded,
        currency=_currency(ch),
        provider_payment_id=_id(ch.get("payment_intent")) or ch["id"],
        # Without the refund list, the running total names this step of the refunds: a
        # resent event maps to the same id, the next partial refund to a new one.
        reversal_id=_id(refund.get("id")) if refund else f"{ch['id']}:refunded:{total_refunded}",
        reversal_amount_minor=_amount(refund["amount"]) if refund else None,
        payment_amount_minor=_amount(ch["amount"]),
        payment_refs=tuple(i for i in (ch["id"], _id(ch.get("invoice"))) if i),
    )


def _dispute_created(event_id: str, event_type: str, dp: dict[str, Any]) -> PaymentEvent:
    return _dispute_event(event_id, event_type, dp, EventKind.DISPUTED)


def _dispute_closed(event_id: str, event_type: str, dp: dict[str, Any]) -> PaymentEvent:
    """charge.dispute.closed: `status` is won, lost (or warning_closed for an inquiry)."""
    status = dp["status"]
    if not isinstance(status, str):
        raise ValueError(f"dispute status {status!r}")
    return replace(
        _dispute_event(event_id, event_type, dp, EventKind.DISPUTE_CLOSED), dispute_status=status
    )


def _dispute_event(
    event_id: str, event_type: str, dp: dict[str, Any], kind: EventKind
) -> PaymentEvent:
    charge = _id(dp.get("charge"))
    return PaymentEvent(
        provider=PROVIDER,
        event_id=event_id,
        event_type=event_type,
        kind=kind,
        order_no=_meta(dp.get("metadata")),
        amount_minor=_amount(dp["amount"]),
        currency=_currency(dp),
        provider_payment_id=_id(dp.get("payment_intent")) or charge,
        reversal_id=dp["id"],
        reversal_amount_minor=_amount(dp["amount"]),
        payment_refs=(charge,) if charge else (),
    )


_MAPPERS: dict[str, _Mapper] = {
    "checkout.session.completed": _session_event(EventKind.PAID),
    "checkout.session.async_payment_succeeded": _session_event(EventKind.PAID),
    "checkout.session.async_payment_failed": _session_event(EventKind.PAYMENT_FAILED),
    "invoice.paid": _invoice_event(EventKind.RENEWED),
    "invoice.payment_failed": _invoice_event(EventKind.PAYMENT_FAILED),
    "customer.subscription.updated": _subscription_event(EventKind.SUBSCRIPTION_UPDATED),
    "customer.subscription.deleted": _subscription_event(EventKind.SUBSCRIPTION_ENDED),
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_created,
    "charge.dispute.closed": _dispute_closed,
}
