"""A query answer is believed only about the trade it was asked of: a gateway answer that is
signed but names another trade (a replayed answer; the WeChat Pay provider refuses the same)
must not report this order paid."""

from __future__ import annotations

from typing import Any

import pytest

from billing.errors import PaymentError
from sandbox.alipay_host import FakeAlipay
from storage.clock import MovableClock
from tests.unit.test_alipay_provider import PUBLIC_URL, provider_for, request


class AnswersForAnotherTrade(FakeAlipay):
    """Signs its answers for real, but answers every query about trade GPPAIDOTHER."""

    def _run(self, method: str, biz: dict[str, Any], params: dict[str, str]) -> dict[str, str]:
        if method == "alipay.trade.query":
            biz = {**biz, "out_trade_no": "GPPAIDOTHER"}
        return super()._run(method, biz, params)


async def test_a_signed_answer_about_another_trade_is_not_believed():
    host = AnswersForAnotherTrade(clock=MovableClock())
    provider = provider_for(await host.start_for(PUBLIC_URL))
    try:
        await provider.create_checkout(request("GPPAIDOTHER"))
        host.pay("GPPAIDOTHER")
        await provider.create_checkout(request("GPMINE00001"))
        with pytest.raises(PaymentError, match="GPMINE00001"):
            await provider.fetch_status("GPMINE00001")
    finally:
        await provider.close()
        await host.stop()
