"""Bad owner input in /addplan, /addsub and /grant: each case is one catalog line (the key the
bot renders in the owner's language) and nothing changes."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from billing.providers.sandbox_provider import SandboxProvider
from billing.providers.stripe_provider import StripeProvider
from bot.commands import (
    ArgError,
    check_payable,
    example_prices,
    parse_grant_args,
    parse_plan_args,
    payable_currencies,
)
from bot.i18n import t
from membership.catalog import add_plan
from membership.durations import DurationError, parse_duration
from membership.errors import RuleError
from storage.models import Plan, PlanGroup
from storage.money import Money
from tests.factories import make_shop

SANDBOX = SandboxProvider("whsec_x", "http://127.0.0.1:1")
STRIPE = StripeProvider("sk_test_x", "whsec_y")


@pytest.mark.parametrize(
    "text,key",
    [
        ("99999d", "duration_too_long"),
        ("3661d", "duration_too_long"),
        ("121m", "duration_too_long"),
        ("11y", "duration_too_long"),
        ("123456789012345678901234567890y", "duration_too_long"),
        ("0d", "duration_too_short"),
        ("0m", "duration_too_short"),
        ("3x", "duration_invalid"),
        ("30", "duration_invalid"),
        ("-1d", "duration_invalid"),
    ],
)
def test_bad_durations_name_their_cause(text, key):
    with pytest.raises(DurationError) as err:
        parse_duration(text)
    assert err.value.key == key


def test_ten_years_is_the_longest_duration():
    assert parse_duration("3660d") == 3660 and parse_duration("10y") == 3650


@pytest.mark.parametrize(
    "args,key,params",
    [
        ("1 99999d 4.99USD", "duration_too_long", {"text": "99999d"}),
        ("1,1 30d 4.99USD", "plan_group_twice", {"ref": "1"}),
        ("1,#1 30d 4.99USD", "plan_group_twice", {"ref": "1"}),
        ("2,1,2 30d 4.99USD", "plan_group_twice", {"ref": "2"}),
        ("x 30d 4.99USD", "group_ref_invalid", {"ref": "x"}),
        ("1 30d 0USD", "price_not_positive", {}),
        ("1 30d 4.99FOO", "currency_unknown", {"currency": "FOO"}),
        ("1 30d 1.5XTR", "price_decimals", {"currency": "XTR", "places": 0, "amount": "1.5"}),
        ("1 30d 99999999999USD", "price_too_large", {"text": "99999999999USD"}),
        ("1 30d Monthly", "price_invalid", {"text": "Monthly"}),
        ("1 30d 4.99USD " + "x" * 129, "title_too_long", {}),
    ],
)
def test_bad_plan_args(args, key, params):
    with pytest.raises(ArgError) as err:
        parse_plan_args(args, recurring=False)
    assert (err.value.key, err.value.params) == (key, params)
    for lang in ("en", "zh"):  # renders: every key exists with the params it is given
        assert t(err.value.key, lang, **err.value.params)


def test_too_long_says_too_long_not_not_a_duration():
    with pytest.raises(ArgError) as err:
        parse_plan_args("1 99999d 4.99USD", recurring=False)
    assert "too long" in t(err.value.key, "en", **err.value.params)
    assert "not a duration" not in t(err.value.key, "en", **err.value.params)
    with pytest.raises(ArgError, match="duration_too_long"):
        parse_grant_args("@bob 1 99999d")


def test_the_duration_is_echoed_as_written():
    assert parse_plan_args("1 30d 4.99USD", recurring=False).duration_text == "30d"
    assert parse_plan_args("1 12m 4.99USD", recurring=True).duration_text == "12m"
    assert parse_plan_args("1 lifetime 4.99USD", recurring=False).duration_text == "lifetime"


def test_payable_currencies_follow_the_configured_providers():
    assert payable_currencies([STRIPE]) == ["USD", "EUR", "GBP", "CNY"]
    assert payable_currencies([SANDBOX, STRIPE]) == ["USD", "EUR", "GBP", "CNY"]
    assert payable_currencies([]) == []
    assert example_prices([STRIPE]) == "4.99USD 4.99EUR"
    assert "XTR" not in example_prices([SANDBOX, STRIPE])


def test_a_price_no_provider_accepts_is_refused():
    check_payable([Money(499, "USD"), Money(990, "CNY")], [STRIPE])
    with pytest.raises(ArgError) as err:
        check_payable([Money(499, "USD"), Money(250, "XTR")], [SANDBOX, STRIPE])
    assert err.value.key == "currency_not_payable"
    assert err.value.params == {"currency": "XTR", "currencies": "USD, EUR, GBP, CNY"}
    with pytest.raises(ArgError, match="currency_no_provider"):
        check_payable([Money(499, "USD")], [])


async def test_add_plan_refuses_a_group_named_twice(db, now):
    """`1` and the group's chat id are the same group: refused before the insert that would
    break plan_group's primary key."""
    shop = await make_shop(db, now)
    async with db.session() as s:
        before = await s.scalar(select(func.count()).select_from(Plan))
    with pytest.raises(RuleError) as err:
        async with db.transaction() as s:
            owner = await s.merge(shop.owner)
            group = await s.merge(shop.group)
            await add_plan(s, owner, [group, group], 30, [Money(499, "USD")], "Twice", now)
    assert (err.value.key, err.value.params) == ("plan_group_twice", {"ref": shop.group.id})
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Plan)) == before
        assert await s.scalar(select(func.count()).select_from(PlanGroup)) == 1
