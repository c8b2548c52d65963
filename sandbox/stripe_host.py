"""A local Stripe-compatible API host (aiohttp) for the tests, the demo and bench/.

It speaks what the official SDK sends (form-encoded bodies with bracketed keys, Bearer auth,
Idempotency-Key), validates checkout sessions the way Stripe does, answers with objects of
Stripe's real shape (from `stripe_objects.json`, trimmed from Stripe's own examples) and, when
a buyer pays on its `/pay/<id>` page or a test calls `pay()`, delivers signed events to
`webhook_url` exactly as Stripe does: the same envelope, the same `Stripe-Signature` scheme.

It never reads ../shared and imports no Stripe SDK.
"""

from __future__ import annotations

import asyncio
import calendar
import copy
import hashlib
import hmac
import html
import json
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aiohttp import ClientError, ClientSession, ClientTimeout, web

API_VERSION = "2026-10-28.endive"
SESSION_TTL = 24 * 3600
# Beside this module (package data), not via importlib.resources: an editable install made
# before sandbox/__init__.py existed sees `sandbox` as a namespace package.
_OBJECTS: dict[str, dict[str, Any]] = json.loads(
    Path(__file__).with_name("stripe_objects.json").read_text("utf-8")
)
_ALNUM = string.ascii_letters + string.digits
_ZERO_DECIMAL = {
    "BIF",
    "CLP",
    "DJF",
    "GNF",
    "JPY",
    "KMF",
    "KRW",
    "MGA",
    "PYG",
    "RWF",
    "UGX",
    "VND",
    "VUV",
    "XAF",
    "XOF",
    "XPF",
    "ISK",
}
_THREE_DECIMAL = {"BHD", "JOD", "KWD", "OMR", "TND"}


class _Clock(Protocol):
    def now(self) -> datetime: ...


# -- helpers other tests and bench/ use --------------------------------------------------


def new_id(prefix: str) -> str:
    """An id shaped like Stripe's: cs_test_<58>, or <prefix>_1<23> for everything else."""
    if prefix == "cs":
        return "cs_test_" + "".join(secrets.choice(_ALNUM) for _ in range(58))
    return f"{prefix}_1" + "".join(secrets.choice(_ALNUM) for _ in range(23))


def stripe_object(kind: str, **overrides: Any) -> dict[str, Any]:
    """A fresh copy of Stripe's example `kind` object (checkout.session, invoice, subscription,
    charge, dispute, refund, event) with top-level fields replaced."""
    obj = copy.deepcopy(_OBJECTS[kind])
    obj.update(overrides)
    return obj


def checkout_session_object(**overrides: Any) -> dict[str, Any]:
    """A real-shaped open, unpaid `checkout.session` with a new id; override any field."""
    now = int(time.time())
    fields: dict[str, Any] = {
        "id": new_id("cs"),
        "created": now,
        "expires_at": now + SESSION_TTL,
        "status": "open",
        "payment_status": "unpaid",
    }
    return stripe_object("checkout.session", **{**fields, **overrides})


def build_event(
    event_type: str,
    obj: dict[str, Any],
    event_id: str | None = None,
    created: int | None = None,
    *,
    previous_attributes: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The `event` envelope Stripe posts to a webhook endpoint (a snapshot of `obj`)."""
    data: dict[str, Any] = {"object": copy.deepcopy(obj)}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return stripe_object(
        "event",
        id=event_id or new_id("evt"),
        api_version=API_VERSION,
        created=int(time.time()) if created is None else created,
        data=data,
        livemode=False,
        pending_webhooks=1,
        type=event_type,
        request={"id": request_id, "idempotency_key": None},
    )


def event_body(event: dict[str, Any]) -> bytes:
    """The bytes Stripe sends: pretty-printed JSON (so verifiers must use the raw bytes)."""
    return json.dumps(event, indent=2).encode("utf-8")


def sign_payload(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header value: t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode("utf-8"), f"{ts}.".encode() + body, hashlib.sha256)
    return f"t={ts},v1={mac.hexdigest()}"


# -- form decoding ------------------------------------------------------------------------


class ApiError(Exception):
    """Answered with Stripe's error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = (
            status,
            message,
            param,
            code,
            type_,
        )

    def body(self) -> dict[str, Any]:
        err = {"type": self.type, "message": self.message, "code": self.code, "param": self.param}
        return {"error": {k: v for k, v in err.items() if v is not None}}


_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """`line_items[0][price_data][currency]=usd` -> {"line_items": [{"price_data": {...}}]}.

    Numeric indices become lists (which must run 0..n-1, as Stripe requires); `key[]` appends.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        m = _KEY.match(key)
        if not m:
            raise ApiError(400, f"Invalid parameter name: {key}", key)
        path = [m[1], *re.findall(r"\[([^\[\]]*)\]", m[2])]
        node = root
        for depth, part in enumerate(path):
            if part == "":
                part = str(len(node))
            last = depth == len(path) - 1
            if last:
                if isinstance(node.get(part), dict):
                    raise ApiError(400, f"Invalid value for {key}: expected a hash", key)
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ApiError(400, f"Invalid value for {key}: not a hash", key)
                node = child
    return _listify(root, "")


def _listify(node: dict[str, Any], prefix: str) -> Any:
    out = {
        k: _listify(v, f"{prefix}[{k}]" if prefix else k) if isinstance(v, dict) else v
        for k, v in node.items()
    }
    if prefix and out and all(k.isdigit() for k in out):
        idx = sorted(int(k) for k in out)
        if idx != list(range(len(idx))):
            raise ApiError(400, f"Invalid array: {prefix} indices must run from 0", prefix)
        return [out[str(i)] for i in idx]
    return out


def _int(value: Any, param: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise ApiError(400, f"Invalid integer: {value}", param, "parameter_invalid_integer")
    n = int(value)
    if n < minimum:
        raise ApiError(
            400,
            f"This value must be greater than or equal to {minimum}.",
            param,
            "parameter_invalid_integer",
        )
    if maximum is not None and n > maximum:
        raise ApiError(
            400,
            f"This value must be less than or equal to {maximum}.",
            param,
            "parameter_invalid_integer",
        )
    return n


def _bool(value: Any, param: str) -> bool:
    if value not in ("true", "false"):
        raise ApiError(400, f"Invalid boolean: {value}", param)
    return value == "true"


def _missing(param: str) -> ApiError:
    return ApiError(400, f"Missing required param: {param}.", param, "parameter_missing")


def _unknown(params: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
    for name in params:
        if name not in allowed:
            full = f"{prefix}[{name}]" if prefix else name
            raise ApiError(400, f"Received unknown parameter: {full}", full, "parameter_unknown")


def _metadata(value: Any, param: str) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ApiError(400, "Invalid metadata: must be a hash of strings", param)
    if len(value) > 50 or any(len(k) > 40 or len(v) > 500 for k, v in value.items()):
        raise ApiError(
            400, "Metadata has at most 50 keys of 40 and values of 500 characters", param
        )
    return dict(value)


def _add_interval(ts: int, interval: str, count: int) -> int:
    if interval == "day":
        return ts + 86400 * count
    if interval == "week":
        return ts + 7 * 86400 * count
    d = datetime.fromtimestamp(ts, UTC)
    months = d.month - 1 + count * (12 if interval == "year" else 1)
    year, month = d.year + months // 12, months % 12 + 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return int(d.replace(year=year, month=month, day=day).timestamp())


def _format_amount(amount: int | None, currency: str | None) -> str:
    if amount is None or not currency:
        return "-"
    cur = currency.upper()
    exp = 0 if cur in _ZERO_DECIMAL else 3 if cur in _THREE_DECIMAL else 2
    return f"{amount / 10**exp:.{exp}f} {cur}"


# -- the host ------------------------------------------------------------------------------

_PARAMS = web.RequestKey("stripe_params", dict)
_SESSION_PARAMS = {
    "mode",
    "line_items",
    "client_reference_id",
    "metadata",
    "success_url",
    "cancel_url",
    "expires_at",
    "subscription_data",
    "payment_intent_data",
    "customer",
    "customer_email",
    "locale",
    "payment_method_types",
    "allow_promotion_codes",
    "ui_mode",
    "expand",
    "submit_type",
    "billing_address_collection",
}


@dataclass
class Delivery:
    event: dict[str, Any]
    status: int  # the receiver's HTTP status; 0 when it could not be reached
    error: str | None = None


@dataclass
class ApiRequest:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Checkout:  # what the session object does not show
    line_items: list[dict[str, Any]]
    subscription_metadata: dict[str, str]
    payment_metadata: dict[str, str]
    charge_id: str | None = None


class FakeStripe:
    """A Stripe API host on a local port. Only `secret_key` is accepted as API key."""

    def __init__(
        self,
        secret_key: str = "sk_test_gatepass",
        webhook_secret: str = "whsec_gatepass",
        webhook_url: str | None = None,
        *,
        clock: _Clock | None = None,
    ) -> None:
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.clock = clock
        self.base_url = ""
        self.sessions: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.invoice_payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}  # by charge id
        # The next `fail_next` API calls answer `fail_status` (503, as a load balancer would;
        # or 500, Stripe's own api_error) before doing anything: nothing is executed and no
        # idempotent answer is saved.
        self.fail_next = 0
        self.fail_status = 503
        self.events: list[dict[str, Any]] = []
        self.deliveries: list[Delivery] = []
        self.requests: list[ApiRequest] = []
        self._checkouts: dict[str, _Checkout] = {}
        self._idempotent: dict[str, tuple[int, bytes]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._http: ClientSession | None = None

    # -- lifecycle --

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._api_middleware])
        app.add_routes(
            [
                web.post("/v1/checkout/sessions", self._create_session),
                web.get("/v1/checkout/sessions/{id}", self._get_session),
                web.post("/v1/checkout/sessions/{id}/expire", self._expire_session),
                web.get("/v1/subscriptions/{id}", self._get_subscription),
                web.post("/v1/subscriptions/{id}", self._update_subscription),
                web.get("/v1/invoice_payments", self._list_invoice_payments),
                web.post("/v1/refunds", self._create_refund),
                web.get("/v1/refunds/{id}", self._get_refund),
                web.get("/v1/balance", self._get_balance),
                web.route("*", "/v1/{tail:.*}", self._unknown_route),
                web.get("/pay/{id}", self._pay_page),
                web.post("/pay/{id}", self._pay_submit),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{sock.getsockname()[1]}"
        self._http = ClientSession(timeout=ClientTimeout(total=30))
        return self.base_url

    async def stop(self) -> None:
        await self.settle()
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def settle(self) -> None:
        """Wait for events sent in the background (after API calls, as Stripe does)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _now(self) -> int:
        return int((self.clock.now() if self.clock else datetime.now(UTC)).timestamp())

    # -- the buyer's side and what happens after it --

    async def pay(
        self,
        session_id: str,
        amount_total: int | None = None,
        currency: str | None = None,
        *,
        delayed: bool = False,
    ) -> int | None:
        """Complete the session as a buyer would and deliver the events Stripe sends.

        `amount_total`/`currency` override what was charged (to test mismatches); `delayed`
        pays like a bank debit: completed-but-unpaid first, then async_payment_succeeded.
        Returns the receiver's HTTP status (the first non-2xx one, if any); None without
        a webhook_url. Raises ValueError when the session is unknown or not open.
        """
        s = self._lookup(session_id)
        if s["status"] != "open":
            raise ValueError(f"checkout session {session_id} is {s['status']}")
        co, now = self._checkouts[session_id], self._now()
        if amount_total is not None:
            s["amount_total"] = s["amount_subtotal"] = amount_total
        if currency is not None:
            s["currency"] = currency.lower()
        customer = new_id("cus")
        s.update(
            status="complete",
            payment_status="unpaid" if delayed else "paid",
            customer=customer,
            url=None,  # Stripe shows the url only while open
            customer_details={
                "address": None,
                "email": "buyer@example.com",
                "name": "Test Buyer",
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            },
        )
        invoice = None
        pi = new_id("pi")
        if s["mode"] == "payment":
            s["payment_intent"] = pi
            self._charge(co, s, pi, dict(co.payment_metadata))
        elif s["mode"] == "subscription":
            sub = self._new_subscription(s, co, customer, now)
            invoice = self._new_invoice(sub, now, "subscription_create", paid=True)
            s.update(subscription=sub["id"], invoice=invoice["id"])
            self._charge(co, s, pi, {})  # an invoice's charge carries no order metadata
            self._link_invoice_payment(invoice, pi, now)
        statuses = [await self.send_event("checkout.session.completed", s)]
        if delayed:
            s["payment_status"] = "paid"
            statuses.append(await self.send_event("checkout.session.async_payment_succeeded", s))
        if invoice is not None:
            statuses.append(await self.send_event("invoice.paid", invoice))
        return _worst(statuses)

    async def advance_period(self, subscription_id: str, *, fail: bool = False) -> int | None:
        """What Stripe does at the end of a period: end a subscription set to cancel
        (customer.subscription.deleted), else invoice the next period (invoice.paid, or
        invoice.payment_failed with `fail`)."""
        sub = self.subscriptions.get(subscription_id)
        if sub is None:
            raise ValueError(f"no subscription {subscription_id}")
        if sub["status"] == "canceled":
            raise ValueError(f"subscription {subscription_id} is canceled")
        item = sub["items"]["data"][0]
        if sub["cancel_at_period_end"]:
            sub.update(
                status="canceled",
                ended_at=item["current_period_end"],
                canceled_at=sub["canceled_at"] or self._now(),
            )
            return await self.send_event("customer.subscription.deleted", sub)
        if fail:
            sub["status"] = "past_due"
            invoice = self._new_invoice(sub, self._now(), "subscription_cycle", paid=False)
            return await self.send_event("invoice.payment_failed", invoice)
        rec = item["price"]["recurring"]
        start = item["current_period_end"]
        item.update(
            current_period_start=start,
            current_period_end=_add_interval(start, rec["interval"], rec["interval_count"]),
        )
        sub["status"] = "active"
        invoice = self._new_invoice(sub, start, "subscription_cycle", paid=True)
        # The renewal is paid like the first period: a payment intent and its charge (which
        # can be refunded), linked to the invoice by an InvoicePayment.
        pi, now = new_id("pi"), self._now()
        ch = stripe_object(
            "charge",
            id=new_id("ch"),
            amount=invoice["amount_paid"],
            amount_captured=invoice["amount_paid"],
            balance_transaction=new_id("txn"),
            created=now,
            currency=invoice["currency"],
            customer=sub["customer"],
            description="Subscription update",
            payment_intent=pi,
            payment_method=new_id("pm"),
        )
        ch["refunds"]["url"] = f"/v1/charges/{ch['id']}/refunds"
        self.charges[ch["id"]] = ch
        self._link_invoice_payment(invoice, pi, now)
        return await self.send_event("invoice.paid", invoice)

    def _link_invoice_payment(self, invoice: dict[str, Any], pi: str, now: int) -> None:
        """Since 2025 API versions an InvoicePayment links an invoice and its payment."""
        ip = stripe_object(
            "invoice_payment",
            id=new_id("inpay"),
            amount_paid=invoice["amount_paid"],
            amount_requested=invoice["amount_paid"],
            created=now,
            currency=invoice["currency"],
            invoice=invoice["id"],
            payment={"type": "payment_intent", "payment_intent": pi},
            status="paid",
            status_transitions={"canceled_at": None, "paid_at": now},
        )
        self.invoice_payments[ip["id"]] = ip

    async def refund(self, session_id: str, amount: int | None = None) -> int | None:
        """Refund (part of) the session's charge: charge.refunded, amount_refunded cumulative."""
        co = self._checkouts[self._lookup(session_id)["id"]]
        if co.charge_id is None:
            raise ValueError(f"checkout session {session_id} has no charge")
        ch = self.charges[co.charge_id]
        left = ch["amount"] - ch["amount_refunded"]
        amount = left if amount is None else amount
        if not 0 < amount <= left:
            raise ValueError(f"cannot refund {amount}; {left} left")
        self._apply_refund(ch, amount, None, {})
        return await self.send_event("charge.refunded", ch)

    def _apply_refund(
        self, ch: dict[str, Any], amount: int, reason: str | None, metadata: dict[str, str]
    ) -> dict[str, Any]:
        refund = stripe_object(
            "refund",
            id=new_id("re"),
            amount=amount,
            charge=ch["id"],
            created=self._now(),
            currency=ch["currency"],
            payment_intent=ch["payment_intent"],
            status="succeeded",
            reason=reason,
            metadata=metadata,
        )
        ch["amount_refunded"] += amount
        ch["refunded"] = ch["amount_refunded"] == ch["amount"]
        ch["refunds"]["data"].insert(0, refund)
        self.refunds[refund["id"]] = refund
        return refund

    async def dispute(self, session_id: str, reason: str = "fraudulent") -> int | None:
        """The buyer's bank disputes the session's charge: charge.dispute.created."""
        co = self._checkouts[self._lookup(session_id)["id"]]
        if co.charge_id is None:
            raise ValueError(f"checkout session {session_id} has no charge")
        ch = self.charges[co.charge_id]
        ch["disputed"] = True
        dp = stripe_object(
            "dispute",
            id=new_id("dp"),
            amount=ch["amount"],
            charge=ch["id"],
            created=self._now(),
            currency=ch["currency"],
            payment_intent=ch["payment_intent"],
            reason=reason,
            status="needs_response",
        )
        self.disputes[ch["id"]] = dp
        return await self.send_event("charge.dispute.created", dp)

    async def close_dispute(self, session_id: str, status: str = "won") -> int | None:
        """The bank decides the session's dispute: charge.dispute.closed with `status` won or
        lost (the charge stays marked disputed, as on Stripe)."""
        if status not in ("won", "lost"):
            raise ValueError(f"a dispute closes won or lost, not {status}")
        co = self._checkouts[self._lookup(session_id)["id"]]
        dp = self.disputes.get(co.charge_id or "")
        if dp is None:
            raise ValueError(f"checkout session {session_id} has no dispute")
        if dp["status"] in ("won", "lost"):
            raise ValueError(f"dispute {dp['id']} is closed already")
        dp["status"] = status
        return await self.send_event("charge.dispute.closed", dp)

    async def send_event(
        self,
        event_type: str,
        obj: dict[str, Any],
        *,
        previous_attributes: dict[str, Any] | None = None,
    ) -> int | None:
        """Record an event for `obj` (a snapshot) and deliver it signed; the HTTP status."""
        event = build_event(
            event_type, obj, created=self._now(), previous_attributes=previous_attributes
        )
        self.events.append(event)
        return await self._deliver(event)

    async def redeliver(self, event_id: str) -> int | None:
        """Send an event again, newly signed (Stripe retries and duplicates)."""
        event = next(e for e in self.events if e["id"] == event_id)
        return await self._deliver(event)

    async def _deliver(self, event: dict[str, Any]) -> int | None:
        if not self.webhook_url:
            return None
        assert self._http is not None, "FakeStripe.start() first"
        body = event_body(event)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign_payload(body, self.webhook_secret),
        }
        try:
            async with self._http.post(self.webhook_url, data=body, headers=headers) as resp:
                await resp.read()
                delivery = Delivery(event, resp.status)
        except (TimeoutError, ClientError) as e:
            delivery = Delivery(event, 0, f"{type(e).__name__}: {e}")
        self.deliveries.append(delivery)
        return delivery.status

    def _in_background(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- objects --

    def _session(self, session_id: str) -> dict[str, Any]:
        s = self.sessions.get(session_id)
        if s is None:
            raise ApiError(
                404, f"No such checkout.session: '{session_id}'", "session", "resource_missing"
            )
        if s["status"] == "open" and s["expires_at"] <= self._now():
            s["status"] = "expired"  # Stripe expires sessions on its own at expires_at
        return s

    def _lookup(self, session_id: str) -> dict[str, Any]:
        """A session for the Python-side helpers, which raise ValueError, not HTTP errors."""
        if session_id not in self.sessions:
            raise ValueError(f"no checkout session {session_id}")
        return self._session(session_id)

    def _subscription(self, subscription_id: str) -> dict[str, Any]:
        sub = self.subscriptions.get(subscription_id)
        if sub is None:
            raise ApiError(
                404, f"No such subscription: '{subscription_id}'", "id", "resource_missing"
            )
        return sub

    def _charge(self, co: _Checkout, s: dict[str, Any], pi: str, meta: dict[str, str]) -> None:
        ch = stripe_object(
            "charge",
            id=new_id("ch"),
            amount=s["amount_total"],
            amount_captured=s["amount_total"],
            balance_transaction=new_id("txn"),
            created=self._now(),
            currency=s["currency"],
            customer=s["customer"],
            description=None,
            metadata=meta,
            payment_intent=pi,
            payment_method=new_id("pm"),
        )
        ch["refunds"]["url"] = f"/v1/charges/{ch['id']}/refunds"
        self.charges[ch["id"]] = ch
        co.charge_id = ch["id"]

    def _new_subscription(
        self, s: dict[str, Any], co: _Checkout, customer: str, now: int
    ) -> dict[str, Any]:
        sub_id = new_id("sub")
        sub = stripe_object(
            "subscription",
            id=sub_id,
            billing_cycle_anchor=now,
            created=now,
            start_date=now,
            currency=s["currency"],
            customer=customer,
            metadata=dict(co.subscription_metadata),
            status="active",
        )
        template = sub["items"]["data"][0]
        items = []
        for li in co.line_items:
            pd, item = li["price_data"], copy.deepcopy(template)
            rec = pd.get("recurring") or {"interval": "month", "interval_count": 1}
            item.update(
                id=new_id("si"),
                created=now,
                quantity=li["quantity"],
                subscription=sub_id,
                current_period_start=now,
                current_period_end=_add_interval(now, rec["interval"], rec["interval_count"]),
            )
            item["price"].update(
                id=new_id("price"),
                created=now,
                currency=pd["currency"],
                product=new_id("prod"),
                unit_amount=pd["unit_amount"],
                unit_amount_decimal=str(pd["unit_amount"]),
                recurring={**item["price"]["recurring"], **rec},
            )
            items.append(item)
        sub["items"].update(data=items, url=f"/v1/subscription_items?subscription={sub_id}")
        self.subscriptions[sub_id] = sub
        return sub

    def _new_invoice(
        self, sub: dict[str, Any], now: int, reason: str, paid: bool
    ) -> dict[str, Any]:
        inv_id = new_id("in")
        meta = dict(sub["metadata"])
        lines, total = [], 0
        template = _OBJECTS["invoice"]["lines"]["data"][0]
        for item in sub["items"]["data"]:
            amount = item["price"]["unit_amount"] * item["quantity"]
            total += amount
            line = copy.deepcopy(template)
            line.update(
                id=new_id("il"),
                amount=amount,
                currency=sub["currency"],
                description=f"{item['quantity']} × subscription",
                invoice=inv_id,
                metadata=meta,
                quantity=item["quantity"],
                period={"start": item["current_period_start"], "end": item["current_period_end"]},
            )
            line["parent"]["subscription_item_details"].update(
                subscription=sub["id"], subscription_item=item["id"]
            )
            lines.append(line)
        inv = stripe_object(
            "invoice",
            id=inv_id,
            created=now,
            currency=sub["currency"],
            customer=sub["customer"],
            amount_due=total,
            amount_paid=total if paid else 0,
            amount_remaining=0 if paid else total,
            subtotal=total,
            subtotal_excluding_tax=total,
            total=total,
            total_excluding_tax=total,
            billing_reason=reason,
            status="paid" if paid else "open",
            attempt_count=1,
            attempted=True,
            effective_at=now,
            period_start=now,
            period_end=now,
            status_transitions={
                "finalized_at": now,
                "marked_uncollectible_at": None,
                "paid_at": now if paid else None,
                "voided_at": None,
            },
        )
        inv["lines"].update(data=lines, url=f"/v1/invoices/{inv_id}/lines")
        inv["parent"]["subscription_details"] = {"metadata": meta, "subscription": sub["id"]}
        sub["latest_invoice"] = inv_id
        self.invoices[inv_id] = inv
        return inv

    # -- HTTP: the API --

    @web.middleware
    async def _api_middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        headers = {"Request-Id": "req_" + secrets.token_hex(7), "Stripe-Version": API_VERSION}
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        if self.fail_next > 0:
            self.fail_next -= 1
            text = (
                "The server is temporarily unavailable."
                if self.fail_status == 503
                else "An unknown error occurred"
            )
            err = ApiError(self.fail_status, text, type_="api_error")
            return web.Response(
                body=json.dumps(err.body()).encode(),
                status=self.fail_status,
                content_type="application/json",
                headers=headers,
            )
        try:
            self._authenticate(request)
            if key and key in self._idempotent:
                status, body = self._idempotent[key]
                return web.Response(
                    body=body,
                    status=status,
                    content_type="application/json",
                    headers={**headers, "Idempotent-Replayed": "true"},
                )
            params = decode_form(await _form_pairs(request))
            request[_PARAMS] = params
            self.requests.append(
                ApiRequest(request.method, request.path, params, dict(request.headers))
            )
            result = await handler(request)
            assert isinstance(result, web.Response) and isinstance(result.body, bytes)
            status, body = result.status, result.body
        except ApiError as e:
            status, body = e.status, json.dumps(e.body()).encode()
        if key and status != 401:  # Stripe replays the first answer, errors included
            self._idempotent[key] = (status, body)
        return web.Response(
            body=body, status=status, content_type="application/json", headers=headers
        )

    def _authenticate(self, request: web.Request) -> None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise ApiError(
                401,
                "You did not provide an API key. You need to provide your API "
                "key in the Authorization header, using Bearer auth (e.g. "
                "'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        key = auth[7:].strip()
        if not hmac.compare_digest(key.encode(), self.secret_key.encode()):
            masked = key[:8] + "*" * 8 + key[-4:] if len(key) > 12 else "*" * len(key)
            raise ApiError(401, f"Invalid API Key provided: {masked}")

    async def _list_invoice_payments(self, request: web.Request) -> web.Response:
        """GET /v1/invoice_payments: filter by invoice or by payment (payment[type] with
        payment[payment_intent]), newest first, `limit` 1..100."""
        p = request[_PARAMS]
        _unknown(p, {"invoice", "payment", "limit", "status", "expand"})
        limit = _int(p.get("limit", "10"), "limit", minimum=1)
        if limit > 100:
            raise ApiError(400, "Invalid limit: must be between 1 and 100", "limit")
        rows = sorted(self.invoice_payments.values(), key=lambda r: r["created"], reverse=True)
        if "invoice" in p:
            rows = [r for r in rows if r["invoice"] == p["invoice"]]
        if "payment" in p:
            pay = p["payment"]
            if not isinstance(pay, dict):
                raise ApiError(400, "Invalid hash", "payment")
            _unknown(pay, {"type", "payment_intent", "payment_record"}, "payment")
            if pay.get("type") not in ("payment_intent", "payment_record"):
                raise ApiError(
                    400,
                    "Invalid payment[type]: must be one of payment_intent or payment_record",
                    "payment[type]",
                )
            field = pay["type"]
            if field not in pay:
                raise _missing(f"payment[{field}]")
            rows = [r for r in rows if r["payment"].get(field) == pay[field]]
        if "status" in p:
            rows = [r for r in rows if r["status"] == p["status"]]
        return web.json_response(
            {
                "object": "list",
                "url": "/v1/invoice_payments",
                "has_more": len(rows) > limit,
                "data": rows[:limit],
            }
        )

    async def _create_refund(self, request: web.Request) -> web.Response:
        """POST /v1/refunds, as Stripe answers it: on `payment_intent` (its succeeded charge)
        or `charge`, `amount` defaulting to what is left; a card refund succeeds at once, and
        Stripe sends charge.refunded after answering."""
        p = request[_PARAMS]
        _unknown(
            p,
            {
                "charge",
                "payment_intent",
                "amount",
                "reason",
                "metadata",
                "expand",
                "instructions_email",
                "refund_application_fee",
                "reverse_transfer",
            },
        )
        charge_id: Any = p.get("charge")
        pi = p.get("payment_intent")
        if not charge_id and not pi:
            raise ApiError(
                400,
                "One of the following params should be provided for this "
                "request: payment_intent or charge.",
            )
        if charge_id and pi:
            raise ApiError(
                400, "You may only specify one of these parameters: charge, payment_intent."
            )
        if pi:
            ch = next((c for c in self.charges.values() if c["payment_intent"] == pi), None)
            if ch is None:
                raise ApiError(
                    404, f"No such payment_intent: '{pi}'", "payment_intent", "resource_missing"
                )
        else:
            ch = self.charges.get(charge_id)
            if ch is None:
                raise ApiError(404, f"No such charge: '{charge_id}'", "charge", "resource_missing")
        if ch.get("disputed") and self.disputes.get(ch["id"], {}).get("status") != "won":
            raise ApiError(
                400,
                f"Charge {ch['id']} has been charged back; cannot issue a refund.",
                code="charge_disputed",
            )
        left = ch["amount"] - ch["amount_refunded"]
        if left <= 0:
            raise ApiError(
                400, f"Charge {ch['id']} has already been refunded.", code="charge_already_refunded"
            )
        amount = _int(p["amount"], "amount", minimum=1) if "amount" in p else left
        if amount > left:
            raise ApiError(
                400,
                f"Refund amount ({_format_amount(amount, ch['currency'])}) is "
                "greater than unrefunded amount on charge "
                f"({_format_amount(left, ch['currency'])})",
                "amount",
                "amount_too_large",
            )
        reason = p.get("reason")
        if reason is not None and reason not in (
            "duplicate",
            "fraudulent",
            "requested_by_customer",
        ):
            raise ApiError(
                400,
                "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                "reason",
            )
        refund = self._apply_refund(ch, amount, reason, _metadata(p.get("metadata"), "metadata"))
        self._in_background(self.send_event("charge.refunded", ch))
        return web.json_response(refund)

    async def _get_refund(self, request: web.Request) -> web.Response:
        refund = self.refunds.get(request.match_info["id"])
        if refund is None:
            raise ApiError(
                404, f"No such refund: '{request.match_info['id']}'", "id", "resource_missing"
            )
        return web.json_response(refund)

    async def _get_balance(self, request: web.Request) -> web.Response:
        """GET /v1/balance, Stripe's cheapest authenticated read (`config check --online`
        uses it to prove the key): what the charges brought in, per currency, as pending
        (this host never pays out)."""
        _unknown(request[_PARAMS], {"expand"})
        net: dict[str, int] = {}
        for ch in self.charges.values():
            cur = str(ch.get("currency") or "usd")
            net[cur] = (
                net.get(cur, 0) + int(ch.get("amount") or 0) - int(ch.get("amount_refunded") or 0)
            )
        funds = [
            {"amount": amount, "currency": cur, "source_types": {"card": amount}}
            for cur, amount in sorted((net or {"usd": 0}).items())
        ]
        return web.json_response(
            {
                "object": "balance",
                "livemode": False,
                "pending": funds,
                "available": [{**f, "amount": 0, "source_types": {"card": 0}} for f in funds],
            }
        )

    async def _unknown_route(self, request: web.Request) -> web.Response:
        raise ApiError(404, f"Unrecognized request URL ({request.method}: {request.path}).")

    async def _create_session(self, request: web.Request) -> web.Response:
        p = request[_PARAMS]
        _unknown(p, _SESSION_PARAMS)
        mode = p.get("mode")
        if not mode:
            raise _missing("mode")
        if mode not in ("payment", "subscription", "setup"):
            raise ApiError(
                400, "Invalid mode: must be one of payment, setup, or subscription", "mode"
            )
        for name, only in (
            ("subscription_data", "subscription"),
            ("payment_intent_data", "payment"),
        ):
            if name in p and mode != only:
                raise ApiError(400, f"You can not pass `{name}` in `{mode}` mode.", name)
        items = self._line_items(p.get("line_items"), mode)
        now = self._now()
        expires_at = now + SESSION_TTL
        if "expires_at" in p:
            expires_at = _int(p["expires_at"], "expires_at")
            if not now + 1800 - 60 <= expires_at <= now + SESSION_TTL + 60:
                raise ApiError(
                    400,
                    "The `expires_at` timestamp must be between 30 minutes "
                    "and 24 hours from Checkout Session creation.",
                    "expires_at",
                )
        ref = p.get("client_reference_id")
        if ref is not None and (not isinstance(ref, str) or len(ref) > 200):
            raise ApiError(
                400,
                "client_reference_id must be a string of at most 200 characters",
                "client_reference_id",
            )
        amount = (
            sum(i["price_data"]["unit_amount"] * i["quantity"] for i in items) if items else None
        )
        session_id = new_id("cs")
        s = checkout_session_object(
            id=session_id,
            created=now,
            expires_at=expires_at,
            mode=mode,
            amount_subtotal=amount,
            amount_total=amount,
            currency=items[0]["price_data"]["currency"] if items else None,
            client_reference_id=ref,
            metadata=_metadata(p.get("metadata"), "metadata"),
            success_url=p.get("success_url"),
            cancel_url=p.get("cancel_url"),
            customer_email=p.get("customer_email"),
            locale=p.get("locale"),
            payment_status="no_payment_required" if mode == "setup" else "unpaid",
            url=f"{self.base_url}/pay/{session_id}",
        )
        sub_meta = _metadata(
            (p.get("subscription_data") or {}).get("metadata"), "subscription_data[metadata]"
        )
        pi_meta = _metadata(
            (p.get("payment_intent_data") or {}).get("metadata"), "payment_intent_data[metadata]"
        )
        self.sessions[session_id] = s
        self._checkouts[session_id] = _Checkout(items, sub_meta, pi_meta)
        return web.json_response(s)

    def _line_items(self, raw: Any, mode: str) -> list[dict[str, Any]]:
        if mode == "setup":
            if raw:
                raise ApiError(400, "You can not pass `line_items` in `setup` mode.", "line_items")
            return []
        if not raw:
            raise _missing("line_items")
        if not isinstance(raw, list):
            raise ApiError(400, "Invalid array", "line_items")
        items, currencies, recurring = [], set(), False
        for n, li in enumerate(raw):
            at = f"line_items[{n}]"
            if not isinstance(li, dict):
                raise ApiError(400, "Invalid hash", at)
            _unknown(li, {"price_data", "price", "quantity", "adjustable_quantity"}, at)
            if "price" in li:
                raise ApiError(
                    404, f"No such price: '{li['price']}'", f"{at}[price]", "resource_missing"
                )
            pd = li.get("price_data")
            if not isinstance(pd, dict):
                raise ApiError(
                    400, f"You must specify either `price` or `price_data` in `{at}`.", at
                )
            pat = f"{at}[price_data]"
            _unknown(
                pd,
                {
                    "currency",
                    "unit_amount",
                    "product_data",
                    "product",
                    "recurring",
                    "tax_behavior",
                    "unit_amount_decimal",
                },
                pat,
            )
            cur = pd.get("currency")
            if cur is None:
                raise _missing(f"{pat}[currency]")
            if not isinstance(cur, str) or not re.fullmatch(r"[A-Za-z]{3}", cur):
                raise ApiError(400, f"Invalid currency: {cur}", f"{pat}[currency]")
            if "unit_amount" not in pd:
                raise _missing(f"{pat}[unit_amount]")
            unit_amount = _int(pd["unit_amount"], f"{pat}[unit_amount]", maximum=99999999)
            product = pd.get("product_data")
            if "product" not in pd and not (isinstance(product, dict) and product.get("name")):
                raise _missing(f"{pat}[product_data][name]")
            if "quantity" not in li:
                raise _missing(f"{at}[quantity]")
            quantity = _int(li["quantity"], f"{at}[quantity]", minimum=1)
            price: dict[str, Any] = {
                "currency": cur.lower(),
                "unit_amount": unit_amount,
                "product_data": product,
            }
            if "recurring" in pd:
                if mode == "payment":
                    raise ApiError(
                        400,
                        "You specified `payment` mode but passed a recurring price. Either "
                        "switch to `subscription` mode or use only one-time prices.",
                        f"{pat}[recurring]",
                    )
                price["recurring"] = _recurring(pd["recurring"], f"{pat}[recurring]")
                recurring = True
            currencies.add(cur.lower())
            items.append({"price_data": price, "quantity": quantity})
        if len(currencies) > 1:
            raise ApiError(400, "All line items must have the same currency.", "line_items")
        if mode == "subscription" and not recurring:
            raise ApiError(
                400,
                "You must provide at least one recurring price in "
                "`subscription` mode when using prices.",
                "line_items",
            )
        return items

    async def _get_session(self, request: web.Request) -> web.Response:
        return web.json_response(self._session(request.match_info["id"]))

    async def _expire_session(self, request: web.Request) -> web.Response:
        s = self._session(request.match_info["id"])
        if s["status"] != "open":
            raise ApiError(
                400,
                'Only Checkout Sessions with a status in ["open"] can be '
                f'expired. This Checkout Session has a status of "{s["status"]}".',
            )
        s.update(status="expired", url=None)
        self._in_background(self.send_event("checkout.session.expired", s))
        return web.json_response(s)

    async def _get_subscription(self, request: web.Request) -> web.Response:
        return web.json_response(self._subscription(request.match_info["id"]))

    async def _update_subscription(self, request: web.Request) -> web.Response:
        sub = self._subscription(request.match_info["id"])
        p = request[_PARAMS]
        _unknown(p, {"cancel_at_period_end", "metadata", "expand", "proration_behavior"})
        if sub["status"] == "canceled":
            raise ApiError(
                400,
                "A canceled subscription can only update its cancellation_details and metadata.",
            )
        previous: dict[str, Any] = {}
        if "cancel_at_period_end" in p:
            cancel = _bool(p["cancel_at_period_end"], "cancel_at_period_end")
            if cancel != sub["cancel_at_period_end"]:
                previous = {k: sub[k] for k in ("cancel_at_period_end", "cancel_at", "canceled_at")}
                end = sub["items"]["data"][0]["current_period_end"]
                sub.update(
                    cancel_at_period_end=cancel,
                    cancel_at=end if cancel else None,
                    canceled_at=self._now() if cancel else None,
                )
        if "metadata" in p:
            previous["metadata"] = dict(sub["metadata"])
            sub["metadata"].update(_metadata(p["metadata"], "metadata"))
        if previous:  # Stripe tells the webhook after answering the call
            self._in_background(
                self.send_event("customer.subscription.updated", sub, previous_attributes=previous)
            )
        return web.json_response(sub)

    # -- HTTP: the buyer's page --

    async def _pay_page(self, request: web.Request) -> web.Response:
        try:
            s = self._session(request.match_info["id"])
        except ApiError:
            return _page(404, "No such checkout", "<p>This checkout does not exist.</p>")
        co = self._checkouts[s["id"]]
        names = ", ".join(
            html.escape(str((i["price_data"]["product_data"] or {}).get("name")))
            for i in co.line_items
        )
        price = html.escape(_format_amount(s["amount_total"], s["currency"]))
        if s["status"] != "open":
            return _page(409, "Checkout closed", f"<p>This checkout is {s['status']}.</p>")
        every = ""
        if s["mode"] == "subscription":
            rec = co.line_items[0]["price_data"]["recurring"]
            every = f" every {rec['interval_count']} {rec['interval']}(s)"
        return _page(
            200,
            "Pay",
            f"<h1>{names}</h1><p>{price}{every}</p>"
            f'<form method="post"><button type="submit">Pay {price}</button></form>'
            "<p><small>Sandbox Stripe: no money moves.</small></p>",
        )

    async def _pay_submit(self, request: web.Request) -> web.Response:
        session_id = request.match_info["id"]
        if session_id not in self.sessions:
            return _page(404, "No such checkout", "<p>This checkout does not exist.</p>")
        try:
            status = await self.pay(session_id)
        except ValueError as e:
            return _page(409, "Checkout closed", f"<p>{html.escape(str(e))}</p>")
        s = self.sessions[session_id]
        back = (s.get("success_url") or "").replace("{CHECKOUT_SESSION_ID}", session_id)
        link = f'<p><a href="{html.escape(back)}">Back to the shop</a></p>' if back else ""
        return _page(
            200,
            "Paid",
            f"<h1>Payment received</h1><p>Webhook answered "
            f"{status if status is not None else 'nothing (no webhook_url)'}.</p>{link}",
        )


def _recurring(raw: Any, param: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ApiError(400, "Invalid hash", param)
    _unknown(raw, {"interval", "interval_count"}, param)
    interval = raw.get("interval")
    if interval is None:
        raise _missing(f"{param}[interval]")
    if interval not in ("day", "week", "month", "year"):
        raise ApiError(
            400,
            f"Invalid {param}[interval]: must be one of day, month, week, or year",
            f"{param}[interval]",
        )
    count = _int(raw.get("interval_count", "1"), f"{param}[interval_count]", minimum=1)
    if count > {"day": 365, "week": 52, "month": 12, "year": 1}[interval]:
        raise ApiError(
            400,
            "The maximum billing interval is one year (1 year, 12 months, 52 weeks or 365 days).",
            f"{param}[interval_count]",
        )
    return {"interval": interval, "interval_count": count}


async def _form_pairs(request: web.Request) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    pairs = list(request.query.items())
    if request.can_read_body:
        ctype = request.content_type
        if ctype not in ("application/x-www-form-urlencoded", ""):
            raise ApiError(
                400,
                f"Invalid request: unsupported Content-Type {ctype}. If "
                "error persists and you need assistance, please contact support.",
            )
        pairs += parse_qsl(await request.text(), keep_blank_values=True)
    return pairs


def _worst(statuses: list[int | None]) -> int | None:
    return next((s for s in statuses if s is not None and not 200 <= s < 300), statuses[0])


def _page(status: int, title: str, body: str) -> web.Response:
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body style='font-family:sans-serif;max-width:30em;margin:3em auto'>{body}"
        "</body></html>"
    )
    return web.Response(status=status, text=doc, content_type="text/html")
