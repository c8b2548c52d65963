"""Telegram Stars in the emulator: invoice links, subscriptions that charge again every period,
the bots' Star transactions, and the updates they cause.

- A payment (an invoice message paid through interactions.pay_invoice, or an invoice link paid
  here) is an incoming StarTransaction whose id IS the payment's telegram_payment_charge_id
  (Bot API, StarTransaction.id); a refund is an outgoing one with the same id.
- A subscription (an invoice link with subscription_period) charges the user again whenever the
  emulator's clock passes its expiration (`run_renewals`, called when the clock moves): a new
  charge id, is_recurring true, is_first_recurring false, the next expiration. Not when the bot
  (editUserStarSubscription) or the user cancelled it; a renewal made to fail sends a
  `subscription` update with state "failed" and the subscription stops.
- `subscription` updates (Bot API 10.2, BotSubscriptionUpdated): "canceled" / "active" when the
  user or the bot cancels / re-enables, "failed" when a renewal could not be charged.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ControlError
from .state import BotAccount, User

if TYPE_CHECKING:
    from .world import World

# The only subscription period Telegram takes (30 days), and the most a period may cost.
SUBSCRIPTION_PERIOD = 2592000
SUBSCRIPTION_MAX_AMOUNT = 10000


@dataclass
class InvoiceLink:
    slug: str
    bot_id: int
    title: str
    description: str
    payload: str
    currency: str
    total_amount: int
    subscription_period: int | None

    @property
    def url(self) -> str:
        return f"https://t.me/${self.slug}"


@dataclass
class Subscription:
    charge_id: str  # the first payment's: the subscription's name in the Bot API
    bot_id: int
    user_id: int
    payload: str
    title: str
    total_amount: int
    period: int
    expires_at: int
    canceled_by_bot: bool = False
    canceled_by_user: bool = False
    fail_next: bool = False  # the next renewal cannot be charged (e.g. too few Stars)
    lose_next: bool = False  # the next renewal is charged but its update is lost (bot down)
    ended: bool = False  # a renewal failed: it charges no more

    @property
    def canceled(self) -> bool:
        return self.canceled_by_bot or self.canceled_by_user

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class StarsLedger:
    links: dict[str, InvoiceLink] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    # Per bot, oldest first: StarTransaction objects as the Bot API shows them.
    transactions: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def link(self, url: str) -> InvoiceLink:
        slug = url.rsplit("$", 1)[-1] if "$" in url else ""
        found = self.links.get(slug)
        if found is None:
            raise ControlError(404, f"no invoice link {url}")
        return found


def new_charge_id() -> str:
    return "stxt" + secrets.token_urlsafe(32)


def _partner(user: User, payload: str, period: int | None) -> dict[str, Any]:
    partner: dict[str, Any] = {
        "type": "user",
        "transaction_type": "invoice_payment",
        "user": user.to_api(),
        "invoice_payload": payload,
    }
    if period:
        partner["subscription_period"] = period
    return partner


def record_payment(
    world: World, bot: BotAccount, user: User, payment: dict[str, Any], period: int | None = None
) -> None:
    """A Star payment to the bot: its incoming transaction (id = the charge id)."""
    world.stars.transactions.setdefault(bot.id, []).append(
        {
            "id": payment["telegram_payment_charge_id"],
            "amount": payment["total_amount"],
            "date": world.now(),
            "source": _partner(user, payment["invoice_payload"], period),
        }
    )


def record_refund(world: World, payment: dict[str, Any]) -> None:
    """A refund: an outgoing transaction with the refunded payment's id."""
    user = world.users[payment["user_id"]]
    world.stars.transactions.setdefault(payment["bot_id"], []).append(
        {
            "id": payment["telegram_payment_charge_id"],
            "amount": payment["total_amount"],
            "date": world.now(),
            "receiver": _partner(user, payment["invoice_payload"], None),
        }
    )


def deliver_payment(world: World, bot: BotAccount, user: User, payment: dict[str, Any]) -> int:
    """The successful_payment service message in the user's chat with the bot; its id."""
    chat = world.chats[user.id]
    message = world.new_message(chat, user, {"successful_payment": payment}, kind="service")
    bot.updates.push("message", message.data)
    return message.message_id


def charge(
    world: World,
    bot: BotAccount,
    user: User,
    *,
    payload: str,
    total_amount: int,
    subscription: Subscription | None = None,
    first: bool = False,
    deliver: bool = True,
) -> dict[str, Any]:
    """Take the Stars and record it all: the payment, its transaction, its message (unless
    `deliver` is false: the update is lost, as while a bot is down past Telegram's 24 h)."""
    charge_id = new_charge_id()
    payment: dict[str, Any] = {
        "currency": "XTR",
        "total_amount": total_amount,
        "invoice_payload": payload,
        "telegram_payment_charge_id": charge_id,
        "provider_payment_charge_id": "",
    }
    if subscription is not None:
        payment.update(
            subscription_expiration_date=subscription.expires_at,
            is_recurring=True,
            is_first_recurring=first,
        )
    world.payments[charge_id] = {
        **payment,
        "user_id": user.id,
        "bot_id": bot.id,
        "chat_id": user.id,
        "refunded": False,
        "date": world.now(),
        "delivered": deliver,
    }
    record_payment(world, bot, user, payment, subscription.period if subscription else None)
    if deliver:
        world.payments[charge_id]["message_id"] = deliver_payment(world, bot, user, payment)
    return world.payments[charge_id]


def subscription_update(world: World, sub: Subscription, state: str) -> None:
    bot = world.bots[sub.bot_id]
    bot.updates.push(
        "subscription",
        {
            "user": world.users[sub.user_id].to_api(),
            "invoice_payload": sub.payload,
            "state": state,
        },
    )


def run_renewals(world: World) -> int:
    """Charge every subscription whose expiration the clock passed; how many charges."""
    made = 0
    now = world.now()
    for sub in list(world.stars.subscriptions.values()):
        while not sub.ended and not sub.canceled and sub.expires_at <= now:
            if sub.fail_next:
                sub.fail_next, sub.ended = False, True
                subscription_update(world, sub, "failed")
                break
            sub.expires_at += sub.period
            charge(
                world,
                world.bots[sub.bot_id],
                world.users[sub.user_id],
                payload=sub.payload,
                total_amount=sub.total_amount,
                subscription=sub,
                deliver=not sub.lose_next,
            )
            sub.lose_next = False
            made += 1
    return made


def transactions_page(world: World, bot_id: int, offset: int, limit: int) -> list[dict[str, Any]]:
    """The bot's transactions, newest first (as Telegram answers), `limit` from `offset`."""
    newest_first = list(reversed(world.stars.transactions.get(bot_id, [])))
    return newest_first[offset : offset + limit]
