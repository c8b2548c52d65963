"""The sandbox provider's checkout page: what a buyer sees instead of a bank.

Pressing Pay signs a `payment.succeeded` notification with the sandbox webhook secret and
POSTs it over HTTP to our own /webhooks/sandbox, so the grant takes the very path a real
provider's webhook takes (verification, dedupe, one transaction, outbox).

One order is one payment, however often Pay is pressed (a double click, a reload, two tabs):
every press names the same payment id, as a bank's retried request names one charge, so the
ledger records the charge once. Mounted by the demo and the tests only (gatepass.web takes
it as an injected route mount); `gatepass run` refuses a [sandbox_pay] section.
"""
from __future__ import annotations

import html
import json
import secrets
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from sqlalchemy import select

from billing.providers.sandbox_provider import SIGNATURE_HEADER, sign
from storage.db import Database
from storage.models import Order
from storage.money import Money


class CheckoutHost(Protocol):
    """What the page needs of the service it is mounted on (the sandbox never imports the
    application shell: the shell imports it, in the demo's wiring only)."""

    db: Database
    settings: Any  # gatepass.config.Settings: its sandbox_pay secret and web.public_url


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Sandbox checkout</title></head>
<body style="font-family:sans-serif;max-width:28em;margin:3em auto">
<h1>Sandbox checkout</h1><p>Order <b>{order_no}</b>: <b>{price}</b></p><p>{note}</p>{form}
<p><small>Test payments only: no money moves.</small></p></body></html>"""
_FORM = '<form method="post"><button type="submit" style="font-size:1.4em">Pay {price}</button></form>'


def payment_id(order_no: str) -> str:
    """The sandbox payment of an order: one per order, so a second press is the same charge."""
    return f"sbxpay_{order_no}"


def add_routes(app: web.Application, service: CheckoutHost) -> None:
    async def load(order_no: str) -> Order | None:
        async with service.db.session() as s:
            return (await s.execute(select(Order).where(
                Order.order_no == order_no, Order.provider == "sandbox"))).scalar_one_or_none()

    def page(order: Order, note: str, with_form: bool) -> web.Response:
        price = html.escape(str(Money(order.amount_minor, order.currency)))
        return web.Response(content_type="text/html", text=_PAGE.format(
            order_no=html.escape(order.order_no), price=price, note=html.escape(note),
            form=_FORM.format(price=price) if with_form else ""))

    async def show(request: web.Request) -> web.Response:
        order = await load(request.match_info["order_no"])
        if order is None:
            return web.Response(status=404, text="no such sandbox order")
        if order.status == "paid":
            return page(order, "Already paid.", False)
        return page(order, "Press Pay to simulate a successful payment.", True)

    async def pay(request: web.Request) -> web.Response:
        order = await load(request.match_info["order_no"])
        if order is None:
            return web.Response(status=404, text="no such sandbox order")
        if order.status == "paid":
            return page(order, "Already paid.", False)
        body = json.dumps({
            "id": f"sbxevt_{secrets.token_hex(8)}", "type": "payment.succeeded",
            "order_no": order.order_no, "amount_minor": order.amount_minor,
            "currency": order.currency, "payment_id": payment_id(order.order_no),
        }).encode()
        assert service.settings.sandbox_pay is not None
        secret = service.settings.sandbox_pay.webhook_secret.get_secret_value()
        url = f"{service.settings.web.public_url}/webhooks/sandbox"
        async with aiohttp.ClientSession() as http, http.post(
            url, data=body, headers={SIGNATURE_HEADER: sign(body, secret),
                                     "Content-Type": "application/json"},
        ) as resp:
            ok = resp.status == 200
        note = ("Paid. Your invite is on its way in the chat." if ok
                else f"The payment notification failed (HTTP {resp.status}); press Pay again.")
        return page(order, note, not ok)

    app.router.add_get("/sandbox/pay/{order_no}", show)
    app.router.add_post("/sandbox/pay/{order_no}", pay)
