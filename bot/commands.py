"""Parsing owner command arguments. Pure functions, so every bad input has a unit test."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from billing.provider import PaymentProvider
from billing.stars import CURRENCY as STARS
from billing.stars import SUBSCRIPTION_MAX_STARS, SUBSCRIPTION_PERIOD_DAYS
from bot.i18n import t
from membership.admin import UserRef
from membership.broadcast import MAX_TEXT, text_length
from membership.durations import DurationError, parse_duration, parse_period
from storage.money import Money, MoneyError, parse_price

TITLE_MAX = 128
# Currencies an owner is shown in examples and usages, in this order, when some configured
# provider can take them; a price in any other currency a provider accepts works too.
SUGGESTED = {
    "USD": "4.99USD",
    "EUR": "4.99EUR",
    "GBP": "3.99GBP",
    "CNY": "29.90CNY",
    "XTR": "250XTR",
}


# The most of an argument a reason quotes back.
ECHO_MAX = 40


class ArgError(ValueError):
    """What is wrong with the arguments: a message-catalog `key` with its `params`.
    str() is the key and the English line, for logs and tests."""

    def __init__(self, key: str, **params: Any) -> None:
        # What the sender wrote is echoed shortened: echoed whole, a long argument would
        # make the reason longer than Telegram takes (4096), and no reason would reach them.
        params = {
            k: v[:ECHO_MAX] + "…" if isinstance(v, str) and len(v) > ECHO_MAX else v
            for k, v in params.items()
        }
        super().__init__(f"{key}: {t(key, 'en', **params)}")
        self.key = key
        self.params = params


@dataclass(frozen=True)
class PlanArgs:
    group_refs: list[str]
    duration_days: int | None
    duration_text: str  # as the owner wrote it, to echo back unchanged
    prices: list[Money]
    title: str | None


def _looks_like_price(token: str) -> bool:
    return len(token) > 3 and token[-3:].isalpha() and token[0].isdigit()


def parse_plan_args(args: str | None, *, recurring: bool) -> PlanArgs:
    """`<group>[,<group>...] <duration|period> <price>... [title]`."""
    tokens = (args or "").split()
    if len(tokens) < 3:
        raise ArgError("missing_args")
    refs = [parse_group_ref(r) for r in tokens[0].split(",") if r]
    if not refs:
        raise ArgError("missing_args")
    seen: set[str] = set()
    for ref in refs:
        if ref in seen:
            raise ArgError("plan_group_twice", ref=ref)
        seen.add(ref)
    try:
        days = parse_period(tokens[1]) if recurring else parse_duration(tokens[1])
    except DurationError as e:
        raise ArgError(e.key, **e.params) from None
    prices: list[Money] = []
    i = 2
    while i < len(tokens) and _looks_like_price(tokens[i]):
        try:
            prices.append(parse_price(tokens[i]))
        except MoneyError as e:
            raise ArgError(e.key, **e.params) from None
        i += 1
    if not prices:
        raise ArgError("price_invalid", text=tokens[2])
    title = " ".join(tokens[i:]).strip() or None
    if title and len(title) > TITLE_MAX:
        raise ArgError("title_too_long")
    if recurring:
        check_stars_subscription(days, prices)
    return PlanArgs(refs, days, tokens[1], prices, title)


def check_stars_subscription(days: int | None, prices: Iterable[Money]) -> None:
    """Telegram Stars subscriptions renew every 30 days and cost at most 10000 Stars."""
    for price in prices:
        if price.currency != STARS:
            continue
        if days != SUBSCRIPTION_PERIOD_DAYS:
            raise ArgError("stars_sub_period")
        if price.amount_minor > SUBSCRIPTION_MAX_STARS:
            raise ArgError("stars_sub_too_much", most=SUBSCRIPTION_MAX_STARS)


# -- which prices can be paid ------------------------------------------------------------------


def payable_currencies(providers: Iterable[PaymentProvider]) -> list[str]:
    """The suggested currencies some configured provider accepts, in suggestion order."""
    providers = list(providers)
    return [c for c in SUGGESTED if any(p.accepts(c) for p in providers)]


def example_prices(providers: Iterable[PaymentProvider]) -> str:
    """One or two example prices for usages, in currencies that can be paid here."""
    return " ".join(SUGGESTED[c] for c in payable_currencies(providers)[:2]) or SUGGESTED["USD"]


def check_payable(prices: Iterable[Money], providers: Iterable[PaymentProvider]) -> None:
    """ArgError unless some configured provider accepts every price's currency: a price no
    one can pay would only fail later, at a buyer's checkout."""
    providers = list(providers)
    if not providers:
        raise ArgError("currency_no_provider")
    for price in prices:
        if not any(p.accepts(price.currency) for p in providers):
            raise ArgError(
                "currency_not_payable",
                currency=price.currency,
                currencies=", ".join(payable_currencies(providers)),
            )


# -- owner's access tools: /members /export /grant /revoke ------------------------------------

_USERNAME = re.compile(r"^@([A-Za-z0-9_]{3,32})$")
_USER_ID = re.compile(r"^\d{1,19}$")
_GROUP_REF = re.compile(r"^#?-?\d{1,20}$")


@dataclass(frozen=True)
class GrantArgs:
    user: UserRef
    group_ref: str
    duration_days: int | None


@dataclass(frozen=True)
class RevokeArgs:
    user: UserRef
    group_ref: str


def _tokens(args: str | None, want: int) -> list[str]:
    tokens = (args or "").split()
    if len(tokens) < want:
        raise ArgError("missing_args")
    if len(tokens) > want:
        raise ArgError("too_many_args", extra=" ".join(tokens[want:]))
    return tokens


# A WeChat contact id as the puppet gives it (`wxid_...`); an account's own WeChat ID (set by
# its owner: a letter, then letters, digits, _ or -) is matched as a name (find_user).
_WECHAT_ID = re.compile(r"^wxid_[A-Za-z0-9_-]{1,59}$")
WECHAT_NAME_MAX = 64


def parse_user_ref(token: str, platform: str = "telegram") -> UserRef:
    """`@username` or a numeric Telegram user id (positive). On WeChat also a contact id
    (`wxid_...`), or the name /members shows (WeChat has no usernames)."""
    if platform == "wechat":
        if _WECHAT_ID.match(token):
            return UserRef(platform_user_id=token)
        name = token.removeprefix("@")
        if _USER_ID.match(name) and int(name) > 0:  # a Telegram id: a linked owner's group
            return UserRef(platform_user_id=str(int(name)))
        if not name or len(name) > WECHAT_NAME_MAX:
            raise ArgError("user_ref_invalid", ref=token)
        return UserRef(username=name)
    m = _USERNAME.match(token)
    if m:
        return UserRef(username=m[1])
    if _USER_ID.match(token) and int(token) > 0:
        return UserRef(platform_user_id=str(int(token)))
    raise ArgError("user_ref_invalid", ref=token)


def parse_group_ref(token: str) -> str:
    """Our group number (`3`, `#3`) or a Telegram chat id (`-100123`)."""
    if not _GROUP_REF.match(token):
        raise ArgError("group_ref_invalid", ref=token)
    return token.lstrip("#")


def parse_group_arg(args: str | None) -> str:
    """`<group>`, for /members and /export."""
    return parse_group_ref(_tokens(args, 1)[0])


def parse_grant_args(args: str | None, platform: str = "telegram") -> GrantArgs:
    """`<user> <group> <duration>`."""
    user, group, duration = _tokens(args, 3)
    ref, group_ref = parse_user_ref(user, platform), parse_group_ref(group)
    try:
        days = parse_duration(duration)
    except DurationError as e:
        raise ArgError(e.key, **e.params) from None
    return GrantArgs(ref, group_ref, days)


def parse_revoke_args(args: str | None, platform: str = "telegram") -> RevokeArgs:
    """`<user> <group>`."""
    user, group = _tokens(args, 2)
    return RevokeArgs(parse_user_ref(user, platform), parse_group_ref(group))


# -- /refund <order> -------------------------------------------------------------------------

# Order numbers are upper-case letters and digits (billing.checkout.new_order_no); an owner
# copying one by hand may type it in lower case.
_ORDER_NO = re.compile(r"^[A-Z0-9]{4,32}$")


def parse_order_arg(args: str | None) -> str:
    """`<order>`, for /refund."""
    token = _tokens(args, 1)[0].upper()
    if not _ORDER_NO.match(token):
        raise ArgError("order_ref_invalid", ref=_tokens(args, 1)[0][:40])
    return token


# -- channels: /setup @channel, /starlink ------------------------------------------------------

_CHANNEL_USERNAME = re.compile(r"^@[A-Za-z][A-Za-z0-9_]{3,31}$")
_STARS = re.compile(r"^(\d{1,9})XTR$", re.IGNORECASE)
STAR_LINK_NAME_MAX = 32  # Telegram's limit for an invite link's name


@dataclass(frozen=True)
class ChannelSetupArgs:
    channel: str  # "@username", as getChat takes it
    mode: str | None


def parse_channel_setup_args(args: str | None, modes: Iterable[str]) -> ChannelSetupArgs:
    """`@channelusername [mode]`, the private-chat form of /setup."""
    tokens = (args or "").split()
    if not tokens:
        raise ArgError("missing_args")
    if len(tokens) > 2:
        raise ArgError("too_many_args", extra=" ".join(tokens[2:]))
    if not _CHANNEL_USERNAME.match(tokens[0]):
        raise ArgError("channel_ref_invalid", ref=tokens[0])
    mode = tokens[1].lower() if len(tokens) > 1 else None
    if mode is not None and mode not in modes:
        raise ArgError("setup_bad_mode", mode=mode)
    return ChannelSetupArgs(tokens[0], mode)


@dataclass(frozen=True)
class StarLinkArgs:
    group_ref: str
    stars: int
    name: str | None


def parse_starlink_args(args: str | None, max_stars: int) -> StarLinkArgs:
    """`<channel> <price>XTR [name]`: a Telegram Star subscription, 1..max_stars a period."""
    tokens = (args or "").split()
    if len(tokens) < 2:
        raise ArgError("missing_args")
    ref = parse_group_ref(tokens[0])
    m = _STARS.match(tokens[1])
    if not m:
        raise ArgError("starlink_price_invalid", text=tokens[1])
    stars = int(m[1])
    if not 1 <= stars <= max_stars:
        raise ArgError("starlink_price_range", price=stars, max=max_stars)
    name = " ".join(tokens[2:]).strip() or None
    if name and len(name) > STAR_LINK_NAME_MAX:
        raise ArgError("starlink_name_too_long")
    return StarLinkArgs(ref, stars, name)


# -- /broadcast --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BroadcastArgs:
    group_ref: str
    text: str


def parse_broadcast_args(args: str | None) -> BroadcastArgs:
    """`<group> <text>`: the text is everything after the group, line breaks and spacing
    inside it kept (Telegram trims the ends of a message anyway)."""
    parts = (args or "").strip().split(maxsplit=1)
    if len(parts) < 2:
        raise ArgError("missing_args")
    group_ref, text = parse_group_ref(parts[0]), parts[1].strip()
    if text_length(text) > MAX_TEXT:
        raise ArgError("broadcast_too_long", length=text_length(text), max=MAX_TEXT)
    return BroadcastArgs(group_ref, text)


# -- /guard <room> report|remove (WeChat) ------------------------------------------------------

GUARDS = ("report", "remove")


@dataclass(frozen=True)
class GuardArgs:
    group_ref: str
    guard: str


def parse_guard_args(args: str | None) -> GuardArgs:
    """`<group> report|remove`: what the join guard does with a newcomer without access."""
    group, guard = _tokens(args, 2)
    ref, guard = parse_group_ref(group), guard.lower()
    if guard not in GUARDS:
        raise ArgError("guard_bad", guard=guard)
    return GuardArgs(ref, guard)
