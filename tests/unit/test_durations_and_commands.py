import pytest

from bot.commands import ArgError, parse_plan_args
from membership.durations import DurationError, format_duration, parse_duration, parse_period
from storage.money import Money


@pytest.mark.parametrize(
    "text,days",
    [
        ("30d", 30),
        ("12m", 365),
        ("1y", 365),
        ("1m", 30),
        ("lifetime", None),
        ("LIFETIME", None),
        ("18m", 545),
    ],
)
def test_durations(text, days):
    assert parse_duration(text) == days


@pytest.mark.parametrize("text", ["0d", "30", "d", "1w", "-1d", "99999d", "11y"])
def test_bad_durations(text):
    with pytest.raises(DurationError):
        parse_duration(text)


def test_a_subscription_period_cannot_be_lifetime():
    with pytest.raises(DurationError, match="lifetime"):
        parse_period("lifetime")


def test_format_duration():
    assert [format_duration(d) for d in (30, 365, 7, None)] == ["1m", "1y", "7d", "lifetime"]


def test_plan_args_with_several_prices_and_title():
    a = parse_plan_args("1,2 30d 4.99USD 250XTR VIP monthly", recurring=False)
    assert a.group_refs == ["1", "2"] and a.duration_days == 30
    assert a.prices == [Money(499, "USD"), Money(250, "XTR")]
    assert a.title == "VIP monthly"


def test_plan_args_without_title():
    assert parse_plan_args("1 lifetime 20USD", recurring=False).title is None


@pytest.mark.parametrize(
    "args,why",
    [
        (None, "missing_args"),
        ("1 30d", "missing_args"),
        ("1 3x 4.99USD", "not a duration"),
        ("1 30d Monthly", "not a price"),
        ("1 30d 4.999USD", "decimal places"),
        ("1 30d 4.99FOO", "not a supported currency"),
    ],
)
def test_plan_args_errors(args, why):
    with pytest.raises(ArgError, match=why):
        parse_plan_args(args, recurring=False)


def test_sub_args_refuse_lifetime():
    with pytest.raises(ArgError, match="lifetime"):
        parse_plan_args("1 lifetime 4.99USD", recurring=True)
