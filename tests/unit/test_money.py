import pytest

from storage.money import Money, MoneyError, parse_price


@pytest.mark.parametrize(
    "text,minor,cur",
    [
        ("4.99USD", 499, "USD"),
        ("250XTR", 250, "XTR"),
        ("9.90cny", 990, "CNY"),
        ("10USD", 1000, "USD"),
        ("500JPY", 500, "JPY"),
        ("1.234KWD", 1234, "KWD"),
        ("0.1EUR", 10, "EUR"),
    ],
)
def test_prices_are_exact_minor_units(text, minor, cur):
    assert parse_price(text) == Money(minor, cur)


@pytest.mark.parametrize(
    "text,why",
    [
        ("4.999USD", "decimal places"),
        ("2.5XTR", "decimal places"),
        ("0USD", "more than zero"),
        ("USD", "not a price"),
        ("4,99USD", "not a price"),
        ("4.99", "not a price"),
        ("-1USD", "not a price"),
        ("5ABC", "not a supported currency"),
        ("1e3USD", "not a price"),
        ("99999999999999USD", "too large"),
    ],
)
def test_bad_prices_say_why(text, why):
    with pytest.raises(MoneyError, match=why):
        parse_price(text)


def test_format():
    assert Money(499, "USD").format() == "4.99 USD"
    assert Money(250, "XTR").format() == "250 XTR"
    assert Money(1234, "KWD").format() == "1.234 KWD"


def test_money_refuses_floats():
    with pytest.raises(TypeError):
        Money(4.99, "USD")
