"""Alipay's `subject` may not carry "/", "=" or "&" (its documented rule), and the local
gateway refuses one that does, as Alipay may. A plan titled "月卡/VIP" or "A&B" must still
get its QR code, its title shown as the buyer would read it."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_alipay_provider import Pair, pair, request  # noqa: F401 - the fixture


@pytest.mark.parametrize(
    ("title", "shown"),
    [
        ("月卡/VIP", "月卡\uff0fVIP"),
        ("A&B = 30 days", "A\uff06B \uff1d 30 days"),
        ("two\\nlines", "two\\nlines"),
        ("multi\nline\ttitle", "multi line title"),
    ],
)
async def test_a_title_with_characters_alipay_refuses_still_gets_a_code(
    pair: Pair,  # noqa: F811
    title: str,
    shown: str,
):
    co = await pair.provider.create_checkout(request(title=title))
    assert co.url.startswith("https://qr.alipay.com/")
    (params,) = pair.host.requests
    assert json.loads(params["biz_content"])["subject"] == shown


async def test_the_gateway_refuses_a_subject_with_a_slash(pair: Pair):  # noqa: F811
    from sandbox.alipay_trades import Refusal

    with pytest.raises(Refusal, match=r"isv\.invalid-parameter"):
        pair.host.book.precreate(
            {"out_trade_no": "GPX", "subject": "a/b", "total_amount": "9.90"},
            "",
            pair.host.clock.now(),
        )
