"""Invoices (Telegram Stars and provider payments), pre-checkout answers, Stars refunds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import bad_request
from ..interactions import refund_message
from ..stars import record_refund
from .markup import parse_reply_markup
from .messages import QUERY_INVALID, send
from .registry import Call, method


def _prices(call: Call) -> list[dict[str, Any]]:
    prices = call.params.json("prices", "can't parse prices JSON object")
    if not isinstance(prices, list) or not prices:
        raise bad_request("can't parse prices JSON object")
    out = []
    for price in prices:
        if not isinstance(price, dict) or not isinstance(price.get("label"), str):
            raise bad_request("can't parse LabeledPrice JSON object")
        try:
            raw: Any = price.get("amount")  # anything: int() decides
            amount = int(raw)
        except (TypeError, ValueError):
            raise bad_request("can't parse LabeledPrice JSON object") from None
        out.append({"label": price["label"], "amount": amount})
    return out


@dataclass(frozen=True)
class InvoiceFields:
    title: str
    description: str
    payload: str
    currency: str
    provider_token: str
    prices: list[dict[str, Any]]
    total: int


def invoice_fields(call: Call) -> InvoiceFields:
    """The checks sendInvoice and createInvoiceLink share (the Bot API lists the same
    fields and limits for both)."""
    params = call.params
    title = params.string("title", "") or ""
    description = params.string("description", "") or ""
    payload = params.string("payload", "") or ""
    currency = (params.string("currency", "") or "").upper()
    provider_token = params.string("provider_token", "") or ""
    if not 1 <= len(title) <= 32:
        raise bad_request("TITLE_INVALID" if title else "invoice title must be non-empty")
    if not 1 <= len(description) <= 255:
        raise bad_request(
            "DESCRIPTION_INVALID" if description else "invoice description must be non-empty"
        )
    if not 1 <= len(payload.encode()) <= 128:
        raise bad_request("PAYLOAD_INVALID" if payload else "invoice payload must be non-empty")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise bad_request("CURRENCY_INVALID")
    prices = _prices(call)
    if currency == "XTR":
        # Stars: no provider, exactly one price, no tips (Bot API: "Pass an empty string for
        # payments in Telegram Stars", "must contain exactly one item").
        if provider_token:
            raise bad_request("PROVIDER_TOKEN_INVALID")  # plausible; Telegram's wording unknown
        if len(prices) != 1 or params.integer("max_tip_amount"):
            raise bad_request("STARS_INVOICE_INVALID")
    elif not provider_token:
        raise bad_request("PAYMENT_PROVIDER_INVALID")
    total = sum(p["amount"] for p in prices)
    if total <= 0:
        raise bad_request("CURRENCY_TOTAL_AMOUNT_INVALID")
    return InvoiceFields(title, description, payload, currency, provider_token, prices, total)


@method("sendInvoice")
async def send_invoice(call: Call) -> dict[str, Any]:
    world, params = call.world, call.params
    inv = invoice_fields(call)
    title, description, payload, currency = inv.title, inv.description, inv.payload, inv.currency
    provider_token, prices, total = inv.provider_token, inv.prices, inv.total
    markup = parse_reply_markup(params)
    chat = world.resolve_chat(call.bot, params.string("chat_id"))
    world.check_can_post(call.bot, chat)
    start_parameter = params.string("start_parameter", "") or ""
    invoice = {
        "title": title,
        "description": description,
        "start_parameter": start_parameter,
        "currency": currency,
        "total_amount": total,
    }
    stored = send(call, chat, {"invoice": invoice}, kind="invoice", markup=markup)
    stored.invoice = {
        **invoice,
        "payload": payload,
        "prices": prices,
        "provider_token": provider_token,
        "photo_url": params.string("photo_url"),
        "provider_data": params.string("provider_data"),
        "max_tip_amount": params.integer("max_tip_amount", 0),
    }
    return stored.data


@method("answerPreCheckoutQuery")
async def answer_pre_checkout_query(call: Call) -> bool:
    params = call.params
    checkout = call.world.checkouts.get(params.string("pre_checkout_query_id") or "")
    if checkout is None or checkout.bot_id != call.bot.id or checkout.answer.done():
        raise bad_request(QUERY_INVALID)
    ok = params.boolean("ok")
    error_message = params.string("error_message")
    if not ok and not error_message:
        raise bad_request("error_message must be non-empty if ok is false")
    checkout.answer.set_result((ok, error_message))
    return True


@method("refundStarPayment")
async def refund_star_payment(call: Call) -> bool:
    params = call.params
    payment = call.world.payments.get(params.string("telegram_payment_charge_id") or "")
    if (
        payment is None
        or payment["bot_id"] != call.bot.id
        or payment["currency"] != "XTR"
        or payment["user_id"] != params.integer("user_id")
    ):
        raise bad_request("CHARGE_NOT_FOUND")
    if payment["refunded"]:
        raise bad_request("CHARGE_ALREADY_REFUNDED")
    payment["refunded"] = True
    record_refund(call.world, payment)
    refund_message(call.world, payment)
    return True
