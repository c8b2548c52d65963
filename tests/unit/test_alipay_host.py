"""The local Alipay gateway itself (sandbox/alipay_host.py) holds to the published protocol:
it refuses unsigned, badly signed, stale or foreign requests with Alipay's codes, signs its
answers, retries a notification until the answer is exactly `success`, and offers its test
controls over HTTP for the playground."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from billing.provider import CheckoutRequest
from billing.providers.alipay_provider import AlipayProvider
from billing.providers.alipay_wire import shanghai_time
from sandbox.alipay_host import (
    FakeAlipay,
    private_pem,
    public_pem,
    rsa2_sign,
    rsa2_verify,
    sign_content,
)


@pytest.fixture
async def host() -> AsyncIterator[FakeAlipay]:
    h = FakeAlipay(retry_delays=(0.01, 0.01, 0.01))
    await h.start_for("http://127.0.0.1:9")
    try:
        yield h
    finally:
        await h.stop()


def params(host: FakeAlipay, **over: str) -> dict[str, str]:
    p = {
        "app_id": host.app_id,
        "method": "alipay.trade.query",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": shanghai_time(datetime.now(UTC)),
        "version": "1.0",
        "biz_content": json.dumps({"out_trade_no": "GPNOPE"}),
        **over,
    }
    p["sign"] = rsa2_sign(host.app_key, sign_content(p, drop=("sign",)))
    return p


async def call(host: FakeAlipay, form: dict[str, str]) -> dict[str, str]:
    async with aiohttp.ClientSession() as http, http.post(host.gateway, data=form) as r:
        raw = await r.text()
    doc = json.loads(raw)
    key = next(k for k in doc if k != "sign")
    text = raw[raw.index("{", raw.index(key)) : raw.rindex(',"sign"')]
    assert rsa2_verify(host.alipay_key.public_key(), text, doc["sign"])  # every answer signed
    return dict(doc[key])


async def test_requests_are_refused_the_way_alipay_refuses_them(host: FakeAlipay):
    ok = await call(host, params(host))
    assert (ok["code"], ok["sub_code"]) == ("40004", "ACQ.TRADE_NOT_EXIST")
    unsigned = params(host)
    del unsigned["sign"]
    stale = params(host, timestamp=shanghai_time(datetime.now(UTC) - timedelta(hours=1)))
    tampered = params(host) | {"biz_content": json.dumps({"out_trade_no": "GPOTHER"})}
    cases = [
        (unsigned, "40001", "isv.missing-sign"),
        (stale, "40002", "isv.invalid-timestamp"),
        (tampered, "40002", "isv.invalid-signature"),
        (params(host, app_id="2021009999999999"), "40002", "isv.invalid-app-id"),
        (params(host, sign_type="RSA"), "40002", "isv.invalid-signature-type"),
        (params(host, charset="gbk"), "40002", "isv.invalid-charset"),
        (params(host, method="alipay.trade.pay"), "40002", "isv.invalid-method"),
    ]
    for form, code, sub_code in cases:
        got = await call(host, form)
        assert (got["code"], got["sub_code"]) == (code, sub_code), form
    assert len(host.requests) == 1  # only the good one was acted on


async def test_notifications_are_retried_until_exactly_success(host: FakeAlipay):
    answers = iter([(500, "fail"), (200, "success\n"), (200, "success")])
    seen: list[bytes] = []

    async def endpoint(request: web.Request) -> web.Response:
        seen.append(await request.read())
        status, text = next(answers)
        return web.Response(status=status, text=text)

    app = web.Application()
    app.router.add_post("/webhooks/alipay", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    provider = AlipayProvider(
        host.app_id,
        private_pem(host.app_key),
        public_pem(host.alipay_key),
        host.gateway,
        f"http://127.0.0.1:{port}",
    )
    try:
        await provider.create_checkout(
            CheckoutRequest("GPRETRY00001", "Monthly", 990, "CNY", False, 30, "", "", "1")
        )
        host.pay("GPRETRY00001")
        await host.settle()
        (n,) = host.notifications
        assert n.answers == [(500, "fail"), (200, "success\n"), (200, "success")]
        assert n.acknowledged and len(set(seen)) == 1  # the same signed body each time
        provider.verify_webhook({}, seen[0])
    finally:
        await provider.close()
        await runner.cleanup()


async def test_the_playground_drives_it_over_http(host: FakeAlipay):
    provider = AlipayProvider(
        host.app_id,
        private_pem(host.app_key),
        public_pem(host.alipay_key),
        host.gateway,
        "http://127.0.0.1:9",
    )
    try:
        co = await provider.create_checkout(
            CheckoutRequest("GPHTTP000001", "Monthly", 990, "CNY", False, 30, "", "", "1")
        )
        async with aiohttp.ClientSession() as http:

            async def post(path: str, **form: str) -> tuple[int, dict]:
                async with http.post(f"{host.base_url}{path}", data=form) as r:
                    return r.status, await r.json()

            assert (await post("/sandbox/lose", count="x"))[0] == 400
            assert await post("/sandbox/lose", count="1") == (200, {"losing": 1})
            status, paid = await post("/sandbox/pay", qr_code=co.url)
            assert status == 200 and paid["trade_no"]
            status, again = await post("/sandbox/pay", out_trade_no="GPHTTP000001")
            assert (status, again["sub_code"]) == (409, "ACQ.TRADE_HAS_SUCCESS")
            status, finished = await post("/sandbox/finish", out_trade_no="GPHTTP000001")
            assert status == 200 and finished["notify_id"]
            async with http.get(f"{host.base_url}/sandbox/notifications") as r:
                listed = await r.json()
            assert [(n["fields"]["trade_status"], n["lost"]) for n in listed] == [
                ("TRADE_SUCCESS", True),
                ("TRADE_FINISHED", False),
            ]
            status, _ = await post("/sandbox/resend", notify_id=listed[0]["notify_id"])
            assert status == 200
            assert (await post("/sandbox/resend", notify_id="nope"))[0] == 404
    finally:
        await provider.close()
