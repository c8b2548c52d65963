"""Money as integer minor units plus a currency code. Never a float."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# ISO 4217 minor-unit exponents that differ from 2. XTR (Telegram Stars) is whole stars.
_EXPONENTS = {
    "XTR": 0,
    "JPY": 0,
    "KRW": 0,
    "VND": 0,
    "CLP": 0,
    "ISK": 0,
    "UGX": 0,
    "XAF": 0,
    "XOF": 0,
    "BHD": 3,
    "JOD": 3,
    "KWD": 3,
    "OMR": 3,
    "TND": 3,
}
# Currencies we accept in prices: the common Stripe settlement currencies plus CNY and XTR.
KNOWN_CURRENCIES = frozenset(
    "USD EUR GBP CNY JPY HKD SGD AUD CAD CHF SEK NOK DKK PLN CZK INR BRL MXN KRW TWD THB "
    "IDR MYR PHP VND NZD ZAR AED TRY ILS RUB UAH CLP ISK BHD JOD KWD OMR TND XTR".split()
)

_PRICE = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)\s*(?P<cur>[A-Za-z]{3})$")


class MoneyError(ValueError):
    """A price that cannot be read: one English line, and the message-catalog `key` (with
    `params`) the bot says it with in the user's language."""

    def __init__(self, message: str, key: str = "price_invalid", **params: object) -> None:
        super().__init__(message)
        self.key = key
        self.params = params


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


@dataclass(frozen=True, order=True)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount_minor, int) or isinstance(self.amount_minor, bool):
            raise TypeError("amount_minor must be an int")

    def format(self) -> str:
        """4.99 USD, 250 XTR, 9.90 CNY."""
        exp = exponent(self.currency)
        if exp == 0:
            return f"{self.amount_minor} {self.currency}"
        sign = "-" if self.amount_minor < 0 else ""
        whole, frac = divmod(abs(self.amount_minor), 10**exp)
        return f"{sign}{whole}.{frac:0{exp}d} {self.currency}"

    def __str__(self) -> str:
        return self.format()


def parse_price(text: str) -> Money:
    """Read `4.99USD`, `250XTR`, `9.90CNY` (case-insensitive) into exact minor units."""
    m = _PRICE.match(text.strip())
    if not m:
        raise MoneyError(f"'{text}' is not a price like 4.99USD or 250XTR", text=text)
    cur = m["cur"].upper()
    if cur not in KNOWN_CURRENCIES:
        raise MoneyError(f"'{cur}' is not a supported currency", "currency_unknown", currency=cur)
    exp = exponent(cur)
    try:
        amount = Decimal(m["amount"])
    except InvalidOperation:  # pragma: no cover - the regex admits only decimals
        raise MoneyError(f"'{text}' is not a number", text=text) from None
    scaled = amount.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise MoneyError(
            f"{cur} has {exp} decimal places; '{m['amount']}' has more",
            "price_decimals",
            currency=cur,
            places=exp,
            amount=m["amount"],
        )
    minor = int(scaled)
    if minor <= 0:
        raise MoneyError("a price must be more than zero", "price_not_positive")
    if minor > 10**11:
        raise MoneyError("that price is too large", "price_too_large", text=text)
    return Money(minor, cur)
