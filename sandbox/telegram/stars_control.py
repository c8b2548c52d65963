"""Control endpoints for Telegram Stars (stars.py): a user pays an invoice link, cancels or
re-enables a subscription, a renewal is made to fail; a test reads the transactions or makes
Telegram send a payment's message again. Documented in the package docstring."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import interactions, stars
from .errors import ControlError
from .world import World

Route = Callable[[Callable[[web.Request], Awaitable[Any]]], Any]


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise ControlError(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise ControlError(400, "body must be a JSON object")
    return body


async def pay_link(
    world: World,
    user_id: Any,
    url: str,
    timeout: float = interactions.PRE_CHECKOUT_TIMEOUT,
    deliver: bool = True,
) -> dict[str, Any]:
    """The user opens an invoice link in their chat with its bot and pays: pre_checkout_query,
    the bot's answer, then the payment (a subscription starts with it)."""
    user = world.control_user(user_id)
    link = world.stars.link(url)
    bot = world.bots[link.bot_id]
    if user.id not in world.chats:
        raise ControlError(409, f"user {user.id} has no private chat")
    checkout = interactions.CheckoutRecord(
        id=interactions._query_id(), bot_id=bot.id, user_id=user.id
    )
    world.checkouts[checkout.id] = checkout
    bot.updates.push(
        "pre_checkout_query",
        {
            "id": checkout.id,
            "from": user.to_api(),
            "currency": link.currency,
            "total_amount": link.total_amount,
            "invoice_payload": link.payload,
        },
    )
    try:
        ok, error_message = await asyncio.wait_for(asyncio.shield(checkout.answer), timeout)
    except TimeoutError:
        return {"status": "timeout", "pre_checkout_query_id": checkout.id}
    finally:
        world.checkouts.pop(checkout.id, None)
    if not ok:
        return {"status": "declined", "error_message": error_message}
    sub = None
    if link.subscription_period:
        # Named by its first charge; created before the charge so the payment carries it.
        sub = stars.Subscription(
            charge_id="",
            bot_id=bot.id,
            user_id=user.id,
            payload=link.payload,
            title=link.title,
            total_amount=link.total_amount,
            period=link.subscription_period,
            expires_at=world.now() + link.subscription_period,
        )
    payment = stars.charge(
        world,
        bot,
        user,
        payload=link.payload,
        total_amount=link.total_amount,
        subscription=sub,
        first=True,
        deliver=deliver,
    )
    if sub is not None:
        sub.charge_id = payment["telegram_payment_charge_id"]
        world.stars.subscriptions[sub.charge_id] = sub
    return {"status": "paid", **payment}


def setup_routes(app: web.Application, world: Callable[[], World], route: Route) -> None:
    async def pay(request: web.Request) -> Any:
        body = await _body(request)
        return await pay_link(
            world(),
            body.get("user_id"),
            str(body.get("link", "")),
            float(body.get("timeout", interactions.PRE_CHECKOUT_TIMEOUT)),
            deliver=body.get("deliver", True) is not False,
        )

    async def subscriptions(request: web.Request) -> Any:
        return [s.to_json() for s in world().stars.subscriptions.values()]

    async def act(request: web.Request) -> Any:
        """{"action": "cancel" | "renew" | "fail" | "lose"}: the user cancels or re-enables
        the subscription (the bot gets a `subscription` update), its next renewal fails, or
        its next renewal is charged with its update lost."""
        w, body = world(), await _body(request)
        sub = w.stars.subscriptions.get(request.match_info["charge_id"])
        if sub is None:
            raise ControlError(404, "no such subscription")
        action = body.get("action")
        if action == "fail":
            sub.fail_next = True
        elif action == "lose":
            sub.lose_next = True
        elif action in ("cancel", "renew"):
            was = sub.canceled
            sub.canceled_by_user = action == "cancel"
            if sub.canceled != was:
                stars.subscription_update(w, sub, "canceled" if sub.canceled else "active")
        else:
            raise ControlError(400, "action must be cancel, renew, fail or lose")
        return sub.to_json()

    async def transactions(request: web.Request) -> Any:
        w = world()
        bot_id = request.query.get("bot_id")
        bot = w.control_bot(int(bot_id) if bot_id else None)
        return w.stars.transactions.get(bot.id, [])

    async def resend(request: web.Request) -> Any:
        """The payment's successful_payment message again (a new message, a new update)."""
        w = world()
        payment = w.payments.get(request.match_info["charge_id"])
        if payment is None:
            raise ControlError(404, "no such payment")
        fields = (
            "currency",
            "total_amount",
            "invoice_payload",
            "telegram_payment_charge_id",
            "provider_payment_charge_id",
            "subscription_expiration_date",
            "is_recurring",
            "is_first_recurring",
        )
        message_id = stars.deliver_payment(
            w,
            w.bots[payment["bot_id"]],
            w.users[payment["user_id"]],
            {k: payment[k] for k in fields if k in payment},
        )
        return {"message_id": message_id}

    async def refund(request: web.Request) -> Any:
        """Telegram refunds a Star payment by itself (the bot did not ask): the bot gets a
        refunded_payment message, as after refundStarPayment."""
        w = world()
        payment = w.payments.get(request.match_info["charge_id"])
        if payment is None or payment["currency"] != "XTR":
            raise ControlError(404, "no such Star payment")
        if payment["refunded"]:
            raise ControlError(409, "refunded already")
        payment["refunded"] = True
        stars.record_refund(w, payment)
        interactions.refund_message(w, payment)
        return {"refunded": True}

    r = app.router
    r.add_post("/control/stars/links/pay", route(pay))
    r.add_get("/control/stars/subscriptions", route(subscriptions))
    r.add_post("/control/stars/subscriptions/{charge_id}", route(act))
    r.add_get("/control/stars/transactions", route(transactions))
    r.add_post("/control/stars/payments/{charge_id}/resend", route(resend))
    r.add_post("/control/stars/payments/{charge_id}/refund", route(refund))
