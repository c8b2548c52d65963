"""The Bot API calls of Telegram Stars (billing.providers.stars_provider.StarsApi), made
with the bot's aiogram methods. aiogram's errors become StarsApiError with Telegram's code
(None for no answer), which the provider maps to PaymentRefused / PaymentError."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError, TelegramRetryAfter
from aiogram.types import LabeledPrice, TransactionPartnerUser

from billing.providers.stars_provider import StarsApiError, StarTransaction
from billing.stars import CURRENCY

T = TypeVar("T")


async def _call(aw: Awaitable[T]) -> T:
    try:
        return await aw
    except TelegramRetryAfter as e:
        raise StarsApiError(429, e.message) from e
    except TelegramNetworkError as e:
        raise StarsApiError(None, e.message) from e
    except TelegramAPIError as e:
        # aiogram keeps the code only in the exception's class: 400 BadRequest, 401, 403,
        # 404, 409, 413 and 5xx ServerError; the method's own answer carries it.
        code = getattr(e, "error_code", None) or _CODES.get(type(e).__name__, 500)
        raise StarsApiError(code, e.message) from e


_CODES = {
    "TelegramBadRequest": 400,
    "TelegramUnauthorizedError": 401,
    "TelegramForbiddenError": 403,
    "TelegramNotFound": 404,
    "TelegramConflictError": 409,
    "TelegramEntityTooLarge": 413,
    "TelegramServerError": 500,
}


class AiogramStarsApi:
    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send_invoice(
        self, chat_id: int, *, title: str, description: str, payload: str, amount: int
    ) -> None:
        await _call(
            self.bot.send_invoice(
                chat_id=chat_id,
                title=title,
                description=description,
                payload=payload,
                currency=CURRENCY,
                prices=[LabeledPrice(label=title, amount=amount)],
                provider_token="",
            )
        )

    async def create_invoice_link(
        self,
        *,
        title: str,
        description: str,
        payload: str,
        amount: int,
        subscription_period: int | None,
    ) -> str:
        return await _call(
            self.bot.create_invoice_link(
                title=title,
                description=description,
                payload=payload,
                currency=CURRENCY,
                prices=[LabeledPrice(label=title, amount=amount)],
                provider_token="",
                subscription_period=subscription_period,
            )
        )

    async def refund_star_payment(self, user_id: int, charge_id: str) -> None:
        await _call(
            self.bot.refund_star_payment(user_id=user_id, telegram_payment_charge_id=charge_id)
        )

    async def edit_user_star_subscription(
        self, user_id: int, charge_id: str, *, is_canceled: bool
    ) -> None:
        await _call(
            self.bot.edit_user_star_subscription(
                user_id=user_id, telegram_payment_charge_id=charge_id, is_canceled=is_canceled
            )
        )

    async def get_star_transactions(self, offset: int, limit: int) -> list[StarTransaction]:
        page = await _call(self.bot.get_star_transactions(offset=offset, limit=limit))
        out = []
        for tx in page.transactions:
            partner = tx.source if tx.source is not None else tx.receiver
            user = partner if isinstance(partner, TransactionPartnerUser) else None
            out.append(
                StarTransaction(
                    id=tx.id,
                    amount=tx.amount,
                    date=tx.date,
                    incoming=tx.source is not None,
                    user_id=user.user.id if user is not None else None,
                    transaction_type=user.transaction_type if user is not None else None,
                    invoice_payload=user.invoice_payload if user is not None else None,
                    subscription_period=user.subscription_period if user is not None else None,
                )
            )
        return out
