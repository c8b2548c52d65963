"""Parsing owner command arguments. Pure functions, so every bad input has a unit test."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from storage.money import Money, MoneyError, parse_price
from membership.admin import UserRef
from membership.durations import DurationError, parse_duration, parse_period


class ArgError(ValueError):
    """One line saying what is wrong with the arguments: a catalog key (with `params`) or,
    failing that, the English text itself."""

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message)
        self.params = params


@dataclass(frozen=True)
class PlanArgs:
    group_refs: list[str]
    duration_days: int | None
    prices: list[Money]
    title: str | None


def _looks_like_price(token: str) -> bool:
    return len(token) > 3 and token[-3:].isalpha() and token[0].isdigit()


def parse_plan_args(args: str | None, *, recurring: bool) -> PlanArgs:
    """`<group>[,<group>...] <duration|period> <price>... [title]`."""
    tokens = (args or "").split()
    if len(tokens) < 3:
        raise ArgError("missing_args")
    refs = [r for r in tokens[0].split(",") if r]
    if not refs:
        raise ArgError("missing_args")
    try:
        days = parse_period(tokens[1]) if recurring else parse_duration(tokens[1])
    except DurationError as e:
        raise ArgError(str(e)) from None
    prices: list[Money] = []
    i = 2
    while i < len(tokens) and _looks_like_price(tokens[i]):
        try:
            prices.append(parse_price(tokens[i]))
        except MoneyError as e:
            raise ArgError(str(e)) from None
        i += 1
    if not prices:
        raise ArgError(f"'{tokens[2]}' is not a price like 4.99USD or 250XTR")
    title = " ".join(tokens[i:]).strip() or None
    if title and len(title) > 128:
        raise ArgError("the title is longer than 128 characters")
    return PlanArgs(refs, days, prices, title)


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


def parse_user_ref(token: str) -> UserRef:
    """`@username` or a numeric Telegram user id (positive)."""
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


def parse_grant_args(args: str | None) -> GrantArgs:
    """`<user> <group> <duration>`."""
    user, group, duration = _tokens(args, 3)
    ref, group_ref = parse_user_ref(user), parse_group_ref(group)
    try:
        days = parse_duration(duration)
    except DurationError as e:
        raise ArgError(str(e)) from None
    return GrantArgs(ref, group_ref, days)


def parse_revoke_args(args: str | None) -> RevokeArgs:
    """`<user> <group>`."""
    user, group = _tokens(args, 2)
    return RevokeArgs(parse_user_ref(user), parse_group_ref(group))
