"""The local WeChat Pay host refuses a malformed Authorization timestamp with 401 SIGN_ERROR,
as WeChat Pay does, never with a 500 (a "digit" that int() refuses, like "²")."""

from __future__ import annotations

import aiohttp
import pytest

from sandbox.wechatpay_host import FakeWechatPay


@pytest.mark.parametrize("timestamp", ["²", "\uff11\uff12\uff13", "12a", "", "9" * 13])
async def test_a_malformed_timestamp_is_a_sign_error(timestamp: str):
    host = FakeWechatPay()
    await host.start()
    try:
        auth = (
            'WECHATPAY2-SHA256-RSA2048 mchid="1900000109",nonce_str="n",signature="c2ln",'
            f'timestamp="{timestamp}",serial_no="{host.cert_serial_no}"'
        )
        url = f"{host.url}/v3/pay/transactions/out-trade-no/GPX?mchid={host.mchid}"
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, headers={"Authorization": auth}) as r,
        ):
            assert r.status == 401 and (await r.json())["code"] == "SIGN_ERROR"
    finally:
        await host.stop()
