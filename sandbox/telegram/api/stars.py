"""Telegram Stars methods beyond invoices and refunds (payments.py): invoice links (also for
30-day subscriptions), cancelling a user's subscription, and the bot's Star transactions.

Errors follow the Bot API where its wording is known; guessed ones are listed in the package
docstring ("Deviations")."""

from __future__ import annotations

import secrets
from typing import Any

from ..errors import bad_request
from ..stars import (
    SUBSCRIPTION_MAX_AMOUNT,
    SUBSCRIPTION_PERIOD,
    InvoiceLink,
    subscription_update,
    transactions_page,
)
from .payments import invoice_fields
from .registry import Call, method

# getStarTransactions: "Values between 1-100 are accepted. Defaults to 100."
TRANSACTIONS_LIMIT = 100


@method("createInvoiceLink")
async def create_invoice_link(call: Call) -> str:
    params = call.params
    inv = invoice_fields(call)
    title, description, payload, currency = inv.title, inv.description, inv.payload, inv.currency
    total = inv.total
    period = params.integer("subscription_period")
    if period is not None:
        # "Currently, it must always be 2592000 (30 days) if specified. Any invoice for a
        # subscription must be paid in Telegram Stars ... must not exceed 10000 Telegram Stars"
        if period != SUBSCRIPTION_PERIOD:
            raise bad_request("SUBSCRIPTION_PERIOD_INVALID")
        if currency != "XTR":
            raise bad_request("SUBSCRIPTION_PERIOD_INVALID")
        if total > SUBSCRIPTION_MAX_AMOUNT:
            raise bad_request("STARS_INVOICE_INVALID")
    link = InvoiceLink(
        slug=secrets.token_urlsafe(18),
        bot_id=call.bot.id,
        title=title,
        description=description,
        payload=payload,
        currency=currency,
        total_amount=total,
        subscription_period=period,
    )
    call.world.stars.links[link.slug] = link
    return link.url


@method("editUserStarSubscription")
async def edit_user_star_subscription(call: Call) -> bool:
    params = call.params
    user_id = params.integer("user_id")
    charge_id = params.string("telegram_payment_charge_id") or ""
    if user_id is None:
        raise bad_request("user_id is empty")
    if not charge_id:
        raise bad_request("telegram_payment_charge_id is empty")
    if not params.has("is_canceled"):
        raise bad_request("is_canceled is empty")
    canceled = params.boolean("is_canceled")
    world = call.world
    sub = world.stars.subscriptions.get(charge_id)
    if sub is None or sub.bot_id != call.bot.id:
        raise bad_request("CHARGE_ID_INVALID")
    if sub.user_id != user_id:
        raise bad_request("USER_ID_INVALID")
    if sub.canceled_by_bot == canceled:
        raise bad_request("SUBSCRIPTION_NOT_MODIFIED")
    was = sub.canceled
    sub.canceled_by_bot = canceled
    if sub.canceled != was:
        subscription_update(world, sub, "canceled" if canceled else "active")
    return True


@method("getStarTransactions")
async def get_star_transactions(call: Call) -> dict[str, Any]:
    params = call.params
    offset = params.integer("offset", 0)
    limit = params.integer("limit", TRANSACTIONS_LIMIT)
    assert offset is not None and limit is not None
    if offset < 0:
        raise bad_request("OFFSET_INVALID")
    if not 1 <= limit <= TRANSACTIONS_LIMIT:
        raise bad_request("LIMIT_INVALID")
    return {"transactions": transactions_page(call.world, call.bot.id, offset, limit)}
