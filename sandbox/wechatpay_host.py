"""A local WeChat Pay API v3 host (aiohttp) for the tests and the playground, written from the
published protocol: Native orders, query, close, refunds, and signed + encrypted
notifications (sandbox/wechatpay/: keys and signatures, the merchant's orders, delivery).

It refuses what WeChat Pay refuses: a request without a valid `Authorization:
WECHATPAY2-SHA256-RSA2048 ...` (401 SIGN_ERROR), another merchant's mchid or appid, an
unknown order (404 ORDER_NOT_EXIST), paying a closed or expired order, refunding more than
was paid. Every answer, errors too, is signed with the platform key.

It is also an `OutsideHost` (tests/e2e/world.py): `start_for(public_url)` generates the
merchant and platform RSA key pairs and the APIv3 key, writes the merchant private key and
the platform public key as PEM files, and returns the `[wechatpay]` section pointing at it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from sandbox.qr_phone import Payable, add_phone_routes
from sandbox.wechatpay.crypto import (
    BadAuthorization,
    answer_message,
    new_key,
    parse_authorization,
    private_pem,
    public_pem,
    random_text,
    request_message,
    sign,
    verify,
)
from sandbox.wechatpay.merchant import ApiError, Merchant, Order, Refund
from sandbox.wechatpay.notify import Notification, Notifier

TOLERANCE_SECONDS = 300  # a request's Authorization timestamp must be this fresh
_UNIX_TIME = re.compile(r"[0-9]{1,12}")
_Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.Response]]


class _Clock(Protocol):
    def now(self) -> datetime: ...


class FakeWechatPay:
    """One merchant (mchid + appid) at a local WeChat Pay."""

    section = "wechatpay"

    def __init__(
        self,
        *,
        mchid: str = "1900000109",
        appid: str = "wxd678efh567hg6787",
        host: str = "127.0.0.1",
        port: int = 0,
        retry_scale: float = 0.01,
        clock: _Clock | None = None,
    ) -> None:
        self.mchid, self.appid = mchid, appid
        self._host, self._port = host, port
        self.clock = clock  # business time (order expiry); signatures keep wall time
        self.merchant_key = new_key()  # the merchant's API key (we hold its public half)
        self.platform_key = new_key()  # WeChat Pay's own signing key
        self.cert_serial_no = random_text(40, "0123456789ABCDEF")
        self.platform_key_id = "PUB_KEY_ID_0119" + random_text(20, "0123456789")
        self.apiv3_key = random_text(32)
        self.merchant = Merchant(mchid, appid)
        self.notifier = Notifier(
            self.platform_key, self.platform_key_id, self.apiv3_key, self.now, retry_scale
        )
        # What the next refunds end as: SUCCESS, or ABNORMAL / CLOSED (no money moved), or
        # PROCESSING (they stay in progress until `finish_refund`).
        self.refund_outcome = "SUCCESS"
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status answered)
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._dir: Path | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self) -> datetime:
        return self.clock.now() if self.clock is not None else datetime.now(UTC)

    # -- lifecycle (OutsideHost) -------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v3/pay/transactions/native", self._api(self._create))
        app.router.add_get("/v3/pay/transactions/out-trade-no/{no}", self._api(self._query))
        app.router.add_get("/v3/pay/transactions/id/{tid}", self._api(self._query_id))
        app.router.add_post("/v3/pay/transactions/out-trade-no/{no}/close", self._api(self._close))
        app.router.add_post("/v3/refund/domestic/refunds", self._api(self._refund))
        app.router.add_get("/v3/refund/domestic/refunds/{no}", self._api(self._refund_query))
        app.router.add_post("/sandbox/pay/{no}", self._sandbox_pay)
        app.router.add_post("/sandbox/scan", self._sandbox_scan)
        app.router.add_post("/sandbox/lose", self._sandbox_lose)
        app.router.add_get("/sandbox/notifications", self._sandbox_notifications)
        app.router.add_post("/sandbox/notifications/{id}/{how}", self._sandbox_resend)
        app.router.add_get("/sandbox/refunds", self._sandbox_refunds)
        add_phone_routes(
            app,
            app_name="WeChat Pay",
            colour="#07c160",
            payable=self.payable,
            pay=self.pay,
            refused=(ApiError,),
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self._host}:{port}"
        return self.url

    def write_keys(self) -> tuple[Path, Path]:
        """The merchant private key and the platform public key as PEM files (a temp dir)."""
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="wechatpay-sandbox-"))
        merchant, platform = self._dir / "apiclient_key.pem", self._dir / "pub_key.pem"
        merchant.write_bytes(private_pem(self.merchant_key))
        platform.write_bytes(public_pem(self.platform_key.public_key()))
        return merchant, platform

    def config(self) -> dict[str, Any]:
        merchant, platform = self.write_keys()
        return {
            "mchid": self.mchid,
            "appid": self.appid,
            "apiv3_key": self.apiv3_key,
            "private_key_path": str(merchant),
            "cert_serial_no": self.cert_serial_no,
            "platform_public_key_path": str(platform),
            "platform_public_key_id": self.platform_key_id,
            "api_base": self.url,
        }

    async def start_for(self, public_url: str) -> dict[str, Any]:
        # Notifications go to each order's notify_url (the provider sends
        # {public_url}/webhooks/wechatpay), so public_url itself is not needed here.
        await self.start()
        return self.config()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.notifier.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # -- test controls -----------------------------------------------------------------

    def pay(self, out_trade_no: str) -> Order:
        """The buyer scans the order's code and pays: TRANSACTION.SUCCESS goes out. Raises
        ApiError (ORDER_CLOSED, ORDERPAID, ORDER_NOT_EXIST) when WeChat would not let them."""
        order = self.merchant.pay(out_trade_no, self.now())
        self.notifier.notify(
            order.notify_url,
            "TRANSACTION.SUCCESS",
            "transaction",
            order.as_json(self.mchid),
        )
        return order

    @property
    def phone_url(self) -> str:
        """The sandbox phone page (sandbox/qr_phone.py): scan and pay by pressing Pay."""
        return f"{self.url}/sandbox/phone"

    def payable(self) -> list[Payable]:
        """The orders a buyer could still scan and pay now (the sandbox phone lists them)."""
        now, found = self.now(), []
        for order in self.merchant.orders.values():
            try:
                if order.state != "USERPAYING":
                    self.merchant._payable(order, now)
            except ApiError:
                continue
            found.append(Payable(order.out_trade_no, order.total, order.description))
        return found

    def begin_paying(self, out_trade_no: str) -> Order:
        """The buyer scanned and is confirming the payment (USERPAYING); `pay` finishes it."""
        return self.merchant.begin_paying(out_trade_no, self.now())

    def scan(self, code_url: str) -> Order:
        """The buyer scans a code_url (weixin://wxpay/bizpayurl?pr=...) and pays."""
        return self.pay(self.merchant.by_code_url(code_url).out_trade_no)

    def lose_next(self, n: int = 1) -> None:
        self.notifier.lose_next(n)

    @property
    def notifications(self) -> list[Notification]:
        return self.notifier.sent

    @property
    def refunds(self) -> list[Refund]:
        return list(self.merchant.refunds.values())

    # -- signing answers ---------------------------------------------------------------

    def _answer(self, status: int, data: dict[str, Any] | None = None) -> web.Response:
        text = "" if data is None else json.dumps(data, ensure_ascii=False)
        timestamp, nonce = str(int(time.time())), random_text(32)
        headers = {
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": sign(self.platform_key, answer_message(timestamp, nonce, text)),
            "Wechatpay-Serial": self.platform_key_id,
            "Request-ID": random_text(32),
        }
        if data is None:
            return web.Response(status=status, headers=headers)
        return web.Response(
            status=status, text=text, content_type="application/json", headers=headers
        )

    def _error(self, e: ApiError) -> web.Response:
        return self._answer(e.status, {"code": e.code, "message": e.message})

    def _authorize(self, request: web.Request, text: str) -> None:
        header = request.headers.get("Authorization")
        if header is None:
            raise ApiError(401, "SIGN_ERROR", "缺少Authorization请求头")
        try:
            auth = parse_authorization(header)
        except BadAuthorization as e:
            raise ApiError(401, "SIGN_ERROR", str(e)) from None
        if auth["mchid"] != self.mchid:
            raise ApiError(401, "SIGN_ERROR", "商户号与签名不匹配")
        if auth["serial_no"] != self.cert_serial_no:
            raise ApiError(401, "SIGN_ERROR", "商户证书序列号有误")
        ts = auth["timestamp"]
        # ASCII digits only: str.isdigit() takes "²", which int() then refuses (a 500).
        if not _UNIX_TIME.fullmatch(ts) or abs(time.time() - int(ts)) > TOLERANCE_SECONDS:
            raise ApiError(401, "SIGN_ERROR", "请求的时间戳已过期")
        message = request_message(request.method, request.raw_path, ts, auth["nonce_str"], text)
        if not verify(self.merchant_key.public_key(), message, auth["signature"]):
            raise ApiError(401, "SIGN_ERROR", "签名错误")

    def _api(self, handler: _Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def route(request: web.Request) -> web.Response:
            try:
                raw = await request.read()
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise ApiError(400, "PARAM_ERROR", "请求体不是UTF-8") from None
                self._authorize(request, text)
                body: Any = {}
                if request.method == "POST":
                    try:
                        body = json.loads(text)
                    except ValueError:
                        raise ApiError(400, "PARAM_ERROR", "请求体不是JSON") from None
                    if not isinstance(body, dict):
                        raise ApiError(400, "PARAM_ERROR", "请求体不是JSON对象")
                else:
                    mchid = request.query.get("mchid")
                    if mchid is not None and mchid != self.mchid:
                        raise ApiError(400, "PARAM_ERROR", "mchid 与请求头中的商户号不一致")
                response = await handler(request, body)
            except ApiError as e:
                response = self._error(e)
            self.requests.append((request.method, request.path, response.status))
            return response

        return route

    # -- the API -----------------------------------------------------------------------

    def _need_mchid(self, request: web.Request) -> None:
        if request.query.get("mchid") != self.mchid:
            raise ApiError(
                400, "PARAM_ERROR", "输入源“/query/mchid”映射到字段“mchid”必填性规则校验失败"
            )

    async def _create(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        order = self.merchant.create_native(body, self.now())
        return self._answer(200, {"code_url": order.code_url})

    async def _query(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        self._need_mchid(request)
        order = self.merchant.order(request.match_info["no"])
        return self._answer(200, order.as_json(self.mchid))

    async def _query_id(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        self._need_mchid(request)
        order = self.merchant.by_transaction(request.match_info["tid"])
        return self._answer(200, order.as_json(self.mchid))

    async def _close(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        if body.get("mchid") != self.mchid:
            raise ApiError(400, "PARAM_ERROR", "mchid 与请求头中的商户号不一致")
        self.merchant.close(request.match_info["no"])
        return self._answer(204)

    async def _refund(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        refund, new = self.merchant.refund(body, self.now())
        if new:
            self._spawn(self._settle(refund))
        return self._answer(200, refund.as_json())

    async def _refund_query(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        refund = self.merchant.refunds.get(request.match_info["no"])
        if refund is None:
            raise ApiError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return self._answer(200, refund.as_json())

    async def _settle(self, refund: Refund) -> None:
        """The refund completes a moment after it was accepted, and WeChat says so."""
        await asyncio.sleep(0.05)
        if self.refund_outcome != "PROCESSING":
            self.finish_refund(refund.out_refund_no, self.refund_outcome)

    def finish_refund(self, out_refund_no: str, outcome: str = "SUCCESS") -> Refund:
        """A refund in progress ends as `outcome` (SUCCESS, ABNORMAL, CLOSED); its REFUND.*
        notification goes out."""
        refund = self.merchant.refunds[out_refund_no]
        if refund.status != "PROCESSING":
            raise ValueError(f"refund {out_refund_no} is {refund.status} already")
        self.merchant.settle_refund(refund, self.now(), outcome)
        self.notifier.notify(
            refund.notify_url, f"REFUND.{outcome}", "refund", refund.notice(self.mchid)
        )
        return refund

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- /sandbox/... controls over HTTP (the playground) ------------------------------

    @staticmethod
    def _control_error(e: ApiError) -> web.Response:
        return web.json_response({"code": e.code, "message": e.message}, status=e.status)

    async def _sandbox_pay(self, request: web.Request) -> web.Response:
        try:
            order = self.pay(request.match_info["no"])
        except ApiError as e:
            return self._control_error(e)
        return web.json_response(order.as_json(self.mchid))

    async def _sandbox_scan(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            order = self.scan(str(data["code_url"]))
        except ApiError as e:
            return self._control_error(e)
        except (ValueError, KeyError, TypeError):
            return web.json_response(
                {"code": "PARAM_ERROR", "message": "need code_url"}, status=400
            )
        return web.json_response(order.as_json(self.mchid))

    async def _sandbox_lose(self, request: web.Request) -> web.Response:
        try:
            n = int((await request.json()).get("n", 1))
        except (ValueError, TypeError, AttributeError):
            return web.json_response({"code": "PARAM_ERROR", "message": "need n"}, status=400)
        self.lose_next(n)
        return web.json_response({"lose_next": n})

    async def _sandbox_notifications(self, request: web.Request) -> web.Response:
        return web.json_response([n.summary() for n in self.notifications])

    async def _sandbox_resend(self, request: web.Request) -> web.Response:
        note_id, how = request.match_info["id"], request.match_info["how"]
        try:
            if how == "resend":
                attempt = await self.notifier.resend(note_id)
            elif how == "replay":
                attempt = await self.notifier.replay(note_id)
            else:
                return web.json_response({"code": "NOT_FOUND", "message": how}, status=404)
        except KeyError:
            return web.json_response({"code": "NOT_FOUND", "message": note_id}, status=404)
        return web.json_response({"status": attempt.status, "body": attempt.body})

    async def _sandbox_refunds(self, request: web.Request) -> web.Response:
        return web.json_response([r.as_json() for r in self.refunds])
