"""AlipayProvider.refund raises only billing errors: a refund of no money (or less) is
refused before any call, as WeChat Pay's is, not a ValueError out of the yuan formatting."""

from __future__ import annotations

import pytest

from billing.errors import PaymentRefused
from tests.unit.test_alipay_provider import Pair, pair  # noqa: F401 - the fixture


@pytest.mark.parametrize("amount", [0, -1, -990])
async def test_a_refund_of_no_money_is_refused_and_calls_nothing(pair: Pair, amount):  # noqa: F811
    with pytest.raises(PaymentRefused, match="positive"):
        await pair.provider.refund(
            "2026120122001400000000000001", amount, "CNY", idempotency_key="k"
        )
    assert pair.host.requests == []
