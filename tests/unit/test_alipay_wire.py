"""Alipay's wire formats (billing/providers/alipay_wire.py): yuan <-> fen exactly, the signed
text cut out of a gateway answer, and notifications mapped to ledger events (payments grant,
refunds reverse and never grant, other states are recorded only)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.errors import MalformedEvent
from billing.events import MAX_AMOUNT_MINOR, EventKind
from billing.providers.alipay_wire import (
    fen_to_yuan,
    parse_notice,
    read_form,
    shanghai_time,
    signed_content,
    yuan_to_fen,
)

# -- money -----------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=MAX_AMOUNT_MINOR))
def test_fen_to_yuan_and_back_is_exact(fen: int):
    text = fen_to_yuan(fen)
    assert Decimal(text) * 100 == fen and yuan_to_fen(text) == fen
    assert text.count(".") == 1 and len(text.split(".")[1]) == 2


@given(
    st.integers(min_value=0, max_value=10**9),
    st.text(alphabet="0123456789", min_size=1, max_size=2),
)
def test_yuan_with_one_or_two_decimals_is_exact(whole: int, decimals: str):
    text = f"{whole}.{decimals}"
    assert yuan_to_fen(text) == int(Decimal(text) * 100)


@given(
    st.integers(min_value=0, max_value=10**6),
    st.text(alphabet="0123456789", min_size=3, max_size=6),
)
def test_more_than_two_decimals_is_refused(whole: int, decimals: str):
    with pytest.raises(ValueError):
        yuan_to_fen(f"{whole}.{decimals}")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "9,90",
        "-1.00",
        "+1.00",
        "1e3",
        "NaN",
        "Infinity",
        " 9.90",
        "9.90 ",
        "09.90",
        ".5",
        "9.",
        "\uff11.00",  # a full-width digit one
        "10000000000000.00",
    ],
)
def test_amounts_that_are_not_yuan_are_refused(bad: str):
    with pytest.raises(ValueError):
        yuan_to_fen(bad)


@pytest.mark.parametrize("bad", [9.9, 990, None, Decimal("9.90")])
def test_amounts_that_are_not_text_are_refused(bad: object):
    with pytest.raises(ValueError):
        yuan_to_fen(bad)


def test_fen_to_yuan_refuses_what_is_not_whole_fen():
    for bad in (-1, 9.9, True):
        with pytest.raises(ValueError):
            fen_to_yuan(bad)


def test_time_expire_is_beijing_time_and_naive_is_utc():
    assert shanghai_time(datetime(2026, 1, 31, 20, 30, tzinfo=UTC)) == "2026-02-01 04:30:00"
    naive = datetime(2026, 1, 31, 20, 30)  # noqa: DTZ001 - naive on purpose
    assert shanghai_time(naive) == "2026-02-01 04:30:00"


# -- the signed text of an answer ------------------------------------------------------------


def test_signed_content_is_the_exact_text_braces_in_strings_included():
    inner = '{"code":"10000","msg":"Success","subject":"a } tricky { one \\" }","n":{"x":1}}'
    raw = f'{{"alipay_trade_query_response" : {inner},"sign":"abc"}}'
    assert signed_content(raw, "alipay_trade_query_response") == inner
    assert signed_content(raw, "alipay_trade_close_response") is None
    assert (
        signed_content('{"alipay_trade_query_response":"text"}', "alipay_trade_query_response")
        is None
    )


# -- notifications ---------------------------------------------------------------------------

BASE = {
    "notify_time": "2026-12-01 08:00:00",
    "notify_type": "trade_status_sync",
    "notify_id": "2026120100222080000012345678",
    "app_id": "2021000122600001",
    "charset": "utf-8",
    "version": "1.0",
    "sign_type": "RSA2",
    "sign": "c2lnbg==",
    "trade_no": "2026120122001412345678901234",
    "out_trade_no": "GPABCDEFGH23",
    "total_amount": "9.90",
    "subject": "月卡",
}


def form(**fields: str) -> bytes:
    return urlencode({**BASE, **fields}).encode()


@pytest.mark.parametrize("status", ["TRADE_SUCCESS", "TRADE_FINISHED"])
def test_paid_statuses_grant(status: str):
    n = parse_notice(form(trade_status=status))
    e = n.event
    assert n.event_id == BASE["notify_id"] and n.event_type == f"trade_status_sync.{status}"
    assert e is not None and e.kind is EventKind.PAID
    assert (e.order_no, e.amount_minor, e.currency) == ("GPABCDEFGH23", 990, "CNY")
    assert e.provider_payment_id == BASE["trade_no"]  # one per trade: FINISHED dedupes


@pytest.mark.parametrize("status", ["WAIT_BUYER_PAY", "TRADE_CLOSED"])
def test_other_statuses_are_recorded_without_an_event(status: str):
    n = parse_notice(form(trade_status=status))
    assert n.event is None and n.event_type == f"trade_status_sync.{status}"


@pytest.mark.parametrize(
    ("status", "refunded"), [("TRADE_SUCCESS", "5.00"), ("TRADE_CLOSED", "9.90")]
)
def test_refund_notifications_reverse_and_never_grant(status: str, refunded: str):
    n = parse_notice(
        form(
            trade_status=status,
            refund_fee=refunded,
            gmt_refund="2026-12-01 09:00:00.123",
            out_biz_no="gatepass-refund-order-alipay-GPABCDEFGH23-1",
        )
    )
    e = n.event
    assert e is not None and e.kind is EventKind.REFUNDED and n.event_type.endswith(".refund")
    assert e.reversal_id == "gatepass-refund-order-alipay-GPABCDEFGH23-1"
    assert (e.amount_minor, e.payment_amount_minor) == (yuan_to_fen(refunded), 990)
    assert e.provider_payment_id == BASE["trade_no"] and e.order_no == "GPABCDEFGH23"


def test_a_refund_without_its_out_biz_no_is_malformed_not_a_payment():
    with pytest.raises(MalformedEvent, match="out_biz_no") as err:
        parse_notice(form(trade_status="TRADE_SUCCESS", refund_fee="1.00"))
    assert err.value.event_id == BASE["notify_id"]


@pytest.mark.parametrize("amount", ["9.999", "abc", "", "-9.90", "1e2"])
def test_a_paid_notification_with_a_bad_amount_is_malformed(amount: str):
    with pytest.raises(MalformedEvent) as err:
        parse_notice(form(trade_status="TRADE_SUCCESS", total_amount=amount))
    assert err.value.event_id == BASE["notify_id"]  # stored under its own id


def test_zero_amount_is_malformed():
    with pytest.raises(MalformedEvent):
        parse_notice(form(trade_status="TRADE_SUCCESS", total_amount="0.00"))


def test_missing_notify_id_or_order_is_malformed():
    with pytest.raises(MalformedEvent, match="notify_id"):
        parse_notice(form(trade_status="TRADE_SUCCESS", notify_id=""))
    with pytest.raises(MalformedEvent, match="out_trade_no"):
        parse_notice(form(trade_status="TRADE_SUCCESS", out_trade_no=""))


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (form(charset="gbk"), "charset"),
        (form() + b"&trade_no=again", "twice"),
        ("subject=月卡".encode(), "UTF-8 form"),  # raw, not percent-encoded
        (b"subject=%FF%FE", "UTF-8 form"),
        (b"no-equals-sign", "UTF-8 form"),
    ],
)
def test_bodies_that_are_not_our_utf8_form_are_refused(body: bytes, why: str):
    with pytest.raises(ValueError, match=why):
        read_form(body)
    with pytest.raises(MalformedEvent):
        parse_notice(body)


def test_chinese_text_in_a_percent_encoded_form_is_read():
    assert read_form(form())["subject"] == "月卡"
