"""A local Alipay openapi gateway (aiohttp) for the tests and the playground, written from
Alipay's published protocol; it imports no Alipay SDK.

- `POST /gateway.do` (or GET): the common parameters (app_id, method, charset, sign_type,
  timestamp, version, biz_content, sign). A request with no sign, a sign that does not verify
  with the app's public key, an unknown app_id, another sign_type or charset, or a timestamp
  outside the allowed window is refused with Alipay's own codes (40001 / 40002 isv.*).
- Answers are Alipay's shape: `{"<method>_response": {...}, "sign": "..."}`, signed RSA2 over
  the exact text of the response object with this host's "Alipay" key.
- Methods: alipay.trade.precreate / query / close / refund / fastpay.refund.query
  (sandbox/alipay_trades.py keeps the trades and their rules).
- Notifications: form-encoded, signed RSA2 over every field but sign/sign_type, POSTed to the
  trade's notify_url and retried (on a compressed schedule) until the answer is exactly
  `success`.

Test controls, as methods and as small HTTP endpoints for the playground: scan and pay
(`pay`, by out_trade_no or by the qr_code), `finish` (TRADE_FINISHED), `lose_next(n)`,
`resend(notify_id)`, `notifications`, `notify(fields)` (any fields, signed).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sandbox.alipay_trades import Refusal, Trade, TradeBook, bj, parse_bj, to_yuan
from sandbox.qr_phone import Payable, add_phone_routes

APP_ID = "2021000122600001"
# Alipay's real schedule is 4m 10m 10m 1h 2h 6h 15h (25 hours); compressed for tests.
RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
# How far a request's timestamp may be from our time. Alipay documents that a request
# expires 30 minutes after its timestamp by default.
TIMESTAMP_WINDOW = timedelta(minutes=30)
METHODS = (
    "alipay.trade.precreate",
    "alipay.trade.query",
    "alipay.trade.close",
    "alipay.trade.refund",
    "alipay.trade.fastpay.refund.query",
)


class _Clock(Protocol):
    def now(self) -> datetime: ...


class _UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


# -- RSA2 (SHA256withRSA, PKCS#1 v1.5, base64), as both sides of the protocol use it --------


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def rsa2_sign(key: rsa.RSAPrivateKey, text: str) -> str:
    return base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_verify(key: rsa.RSAPublicKey, text: str, sign: str) -> bool:
    try:
        key.verify(base64.b64decode(sign), text.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_content(params: Mapping[str, str], *, drop: tuple[str, ...]) -> str:
    """Sorted `k=v&...` of the non-empty parameters but `drop`: what RSA2 signs."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in drop and v != "")


def signed_notification(key: rsa.RSAPrivateKey, fields: Mapping[str, str]) -> bytes:
    """A notification body: the fields plus sign_type and a sign over all but those two.

    Every other field is signed, an empty one too ("k=" in the sorted text): that is what
    Alipay's notification verification rule (and every Alipay SDK's verify) checks. Only
    request signing leaves empty parameters out (sign_content)."""
    out = {k: v for k, v in fields.items() if k not in ("sign", "sign_type")}
    sign = rsa2_sign(key, "&".join(f"{k}={v}" for k, v in sorted(out.items())))
    return urlencode({**out, "sign_type": "RSA2", "sign": sign}).encode()


@dataclass
class Notification:
    notify_id: str
    url: str
    fields: dict[str, str]
    body: bytes
    lost: bool = False
    answers: list[tuple[int, str]] = field(default_factory=list)  # (HTTP status, body)

    @property
    def acknowledged(self) -> bool:
        return any(status == 200 and text == "success" for status, text in self.answers)


class FakeAlipay:
    """The gateway, its trades, and the controls a test (or the playground) drives."""

    section = "alipay"

    def __init__(
        self,
        *,
        app_id: str = APP_ID,
        host: str = "127.0.0.1",
        clock: _Clock | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self.app_id, self.host = app_id, host
        self.clock: _Clock = clock or _UtcClock()
        self.retry_delays = retry_delays
        self.app_key = new_key()  # the merchant's key pair (its public half is ours to know)
        self.alipay_key = new_key()  # "Alipay"'s own key pair
        self.book = TradeBook()
        self.notifications: list[Notification] = []
        self.requests: list[dict[str, str]] = []  # every verified call's parameters
        self.base_url = ""
        self._lose = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._http: ClientSession | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start_for(self, public_url: str) -> dict[str, Any]:
        """Serve, write the app's private key and Alipay's public key as PEM files, and
        return the [alipay] section that points the service here."""
        await self.start(self.host)
        self._dir = tempfile.TemporaryDirectory(prefix="fake-alipay-")
        folder = Path(self._dir.name)
        app_key, alipay_pub = folder / "app_private_key.pem", folder / "alipay_public_key.pem"
        app_key.write_text(private_pem(self.app_key))
        alipay_pub.write_text(public_pem(self.alipay_key))
        return {
            "app_id": self.app_id,
            "app_private_key_path": str(app_key),
            "alipay_public_key_path": str(alipay_pub),
            "gateway": self.gateway,
        }

    @property
    def gateway(self) -> str:
        return f"{self.base_url}/gateway.do"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.add_routes(
            [
                web.route("*", "/gateway.do", self._gateway),
                web.post("/sandbox/pay", self._http_pay),
                web.post("/sandbox/finish", self._http_finish),
                web.post("/sandbox/lose", self._http_lose),
                web.post("/sandbox/resend", self._http_resend),
                web.get("/sandbox/notifications", self._http_notifications),
            ]
        )
        add_phone_routes(
            app,
            app_name="Alipay",
            colour="#1677ff",
            payable=self.payable,
            pay=self.pay,
            refused=(Refusal,),
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{sock.getsockname()[1]}"
        self._http = ClientSession(timeout=ClientTimeout(total=10))
        return self.base_url

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    async def settle(self) -> None:
        """Wait until every notification sent so far is answered or out of retries."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- the gateway ----------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.Response:
        params = dict(parse_qsl(request.query_string, keep_blank_values=True))
        if request.method == "POST":
            raw = await request.read()
            try:
                params |= dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                return self._answer("error_response", _error("40002", "isv.invalid-charset"))
        method = params.get("method", "")
        key = method.replace(".", "_") + "_response" if method in METHODS else "error_response"
        try:
            self._check(params)
            biz = json.loads(params.get("biz_content") or "{}")
            if not isinstance(biz, dict):
                raise Refusal("isv.invalid-parameter", "biz_content 不是 JSON 对象", "40002")
            self.requests.append(params)
            content = self._run(method, biz, params)
        except Refusal as r:
            content = _error(r.code, r.sub_code, r.sub_msg)
        except ValueError:
            content = _error("40002", "isv.invalid-parameter", "biz_content 不是 JSON")
        self._announce_timeouts()
        return self._answer(key, content)

    def _announce_timeouts(self) -> None:
        """Trades that reached their time_expire unpaid were closed: notify each once."""
        while self.book.timed_out:
            t = self.book.timed_out.pop(0)
            self._notify(t, "TRADE_CLOSED", gmt_close=bj(t.time_expire or self.clock.now()))

    def _check(self, params: dict[str, str]) -> None:
        """The common parameters, in the order Alipay's gateway reports them."""
        for name in ("app_id", "method", "sign_type", "sign", "timestamp", "version"):
            if not params.get(name):
                raise Refusal(f"isv.missing-{name.replace('_', '-')}", f"缺少{name}参数", "40001")
        if params["app_id"] != self.app_id:
            raise Refusal("isv.invalid-app-id", "无效的AppID参数", "40002")
        if params["method"] not in METHODS:
            raise Refusal("isv.invalid-method", "不存在的方法名", "40002")
        if params.get("charset", "utf-8").lower() != "utf-8":
            raise Refusal("isv.invalid-charset", "字符集错误", "40002")
        if params["sign_type"] != "RSA2":
            raise Refusal("isv.invalid-signature-type", "无效的签名类型", "40002")
        try:
            at = parse_bj(params["timestamp"], "timestamp")
        except Refusal:
            raise Refusal("isv.invalid-timestamp", "非法的时间戳参数", "40002") from None
        if abs(datetime.now(UTC) - at) > TIMESTAMP_WINDOW:  # wall time: the transport's
            raise Refusal("isv.invalid-timestamp", "非法的时间戳参数", "40002")
        public = self.app_key.public_key()
        if not rsa2_verify(public, sign_content(params, drop=("sign",)), params["sign"]):
            raise Refusal("isv.invalid-signature", "验签出错", "40002")

    def _run(self, method: str, biz: dict[str, Any], params: dict[str, str]) -> dict[str, str]:
        now = self.clock.now()
        if method == "alipay.trade.precreate":
            t = self.book.precreate(biz, params.get("notify_url", ""), now)
            return _ok(out_trade_no=t.out_trade_no, qr_code=t.qr_code)
        if method == "alipay.trade.query":
            return _ok(**self.book.find(biz, now).facts())
        if method == "alipay.trade.close":
            t = self.book.close(biz, now)
            self._notify(t, "TRADE_CLOSED", gmt_close=bj(now))
            return _ok(trade_no=t.trade_no, out_trade_no=t.out_trade_no)
        if method == "alipay.trade.refund":
            t, r, moved = self.book.refund(biz, now)
            if moved:
                self._notify(
                    t,
                    t.status or "",
                    refund_fee=to_yuan(t.refunded_fen),
                    gmt_refund=bj(r.at),
                    out_biz_no=r.out_request_no,
                )
            return _ok(
                trade_no=t.trade_no,
                out_trade_no=t.out_trade_no,
                buyer_logon_id=t.facts()["buyer_logon_id"],
                fund_change="Y" if moved else "N",
                refund_fee=to_yuan(t.refunded_fen),
                gmt_refund_pay=bj(r.at),
            )
        # alipay.trade.fastpay.refund.query
        t = self.book.find(biz, now)
        found = t.refunds.get(str(biz.get("out_request_no") or t.out_trade_no))
        if found is None:  # Alipay answers success with no refund fields
            return _ok(trade_no=t.trade_no, out_trade_no=t.out_trade_no)
        return _ok(
            trade_no=t.trade_no,
            out_trade_no=t.out_trade_no,
            out_request_no=found.out_request_no,
            total_amount=to_yuan(t.total_fen),
            refund_amount=to_yuan(found.fen),
            refund_status="REFUND_SUCCESS",
        )

    def _answer(self, key: str, content: dict[str, str]) -> web.Response:
        text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        sign = rsa2_sign(self.alipay_key, text)
        body = f'{{"{key}":{text},"sign":"{sign}"}}'
        return web.Response(text=body, content_type="application/json", charset="utf-8")

    # -- notifications --------------------------------------------------------------------

    def _notify(self, t: Trade, status: str, **extra: str) -> Notification:
        now = self.clock.now()
        fields = {
            **t.facts(),
            "trade_status": status,
            "notify_time": bj(now),
            "notify_type": "trade_status_sync",
            "notify_id": secrets.token_hex(16),
            "app_id": self.app_id,
            "charset": "utf-8",
            "version": "1.0",
            "subject": t.subject,
            "seller_id": "2088102177296610",
            "gmt_create": bj(t.created_at or now),
            **({"gmt_payment": bj(t.paid_at)} if t.paid_at else {}),
            **extra,
        }
        return self.notify(fields, url=t.notify_url)

    def notify(self, fields: Mapping[str, str], *, url: str = "") -> Notification:
        """Sign `fields` with Alipay's key and deliver them (retried until `success`)."""
        url = url or self._default_url
        n = Notification(
            fields.get("notify_id", ""),
            url,
            dict(fields),
            signed_notification(self.alipay_key, fields),
        )
        self.notifications.append(n)
        if self._lose > 0:
            self._lose -= 1
            n.lost = True
            return n
        self._spawn(self._deliver(n, (0.0, *self.retry_delays)))
        return n

    @property
    def _default_url(self) -> str:
        return next((t.notify_url for t in self.book.trades.values() if t.notify_url), "")

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, n: Notification, delays: tuple[float, ...]) -> None:
        assert self._http is not None, "start the host first"
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        for delay in delays:
            await asyncio.sleep(delay)
            try:
                async with self._http.post(n.url, data=n.body, headers=headers) as r:
                    n.answers.append((r.status, await r.text()))
            except (ClientError, TimeoutError, OSError) as e:
                n.answers.append((0, type(e).__name__))
            if n.acknowledged:
                return

    # -- test controls --------------------------------------------------------------------

    def pay(self, out_trade_no: str | None = None, *, qr_code: str | None = None) -> str:
        """The buyer scans the code and pays: TRADE_SUCCESS, notified. Returns the trade_no;
        raises Refusal if the code no longer pays (closed, expired, paid)."""
        now = self.clock.now()
        try:
            t = self.book.pay(self.book.scan(out_trade_no, qr_code, now), now)
        finally:
            self._announce_timeouts()
        self._notify(t, "TRADE_SUCCESS")
        return t.trade_no

    @property
    def phone_url(self) -> str:
        """The sandbox phone page (sandbox/qr_phone.py): scan and pay by pressing Pay."""
        return f"{self.base_url}/sandbox/phone"

    def payable(self) -> list[Payable]:
        """The trades a buyer could still scan and pay now (the sandbox phone lists them)."""
        now = self.clock.now()
        return [
            Payable(t.out_trade_no, t.total_fen, t.subject)
            for t in self.book.trades.values()
            if t.status in (None, "WAIT_BUYER_PAY")
            and (t.time_expire is None or now < t.time_expire)
        ]

    def scan(self, out_trade_no: str | None = None, *, qr_code: str | None = None) -> str:
        """The buyer scans but does not pay (yet): the trade exists, WAIT_BUYER_PAY."""
        return self.book.scan(out_trade_no, qr_code, self.clock.now()).trade_no

    def finish(self, out_trade_no: str) -> Notification:
        """The refund period is over: TRADE_FINISHED, notified."""
        t = self.book.finish(self.book.find({"out_trade_no": out_trade_no}, self.clock.now()))
        return self._notify(t, "TRADE_FINISHED")

    def lose_next(self, count: int = 1) -> None:
        """The next `count` notifications never reach the service (no retries either)."""
        self._lose += count

    def resend(self, notify_id: str) -> Notification:
        """Deliver a notification again, as it was (Alipay repeats them)."""
        n = next(x for x in self.notifications if x.notify_id == notify_id)
        self._spawn(self._deliver(n, (0.0,)))
        return n

    def trade(self, out_trade_no: str) -> Trade:
        return self.book.trades[out_trade_no]

    # -- the same controls over HTTP (the playground) -------------------------------------

    async def _form(self, request: web.Request) -> dict[str, str]:
        return {k: str(v) for k, v in (await request.post()).items()}

    async def _http_pay(self, request: web.Request) -> web.Response:
        f = await self._form(request)
        try:
            trade_no = self.pay(f.get("out_trade_no") or None, qr_code=f.get("qr_code") or None)
        except Refusal as r:
            return web.json_response({"sub_code": r.sub_code, "sub_msg": r.sub_msg}, status=409)
        return web.json_response({"trade_no": trade_no})

    async def _http_finish(self, request: web.Request) -> web.Response:
        try:
            n = self.finish((await self._form(request)).get("out_trade_no", ""))
        except Refusal as r:
            return web.json_response({"sub_code": r.sub_code, "sub_msg": r.sub_msg}, status=409)
        return web.json_response({"notify_id": n.notify_id})

    async def _http_lose(self, request: web.Request) -> web.Response:
        count = (await self._form(request)).get("count", "1")
        if not count.isdigit():
            return web.json_response({"error": "count must be a whole number"}, status=400)
        self.lose_next(int(count))
        return web.json_response({"losing": self._lose})

    async def _http_resend(self, request: web.Request) -> web.Response:
        notify_id = (await self._form(request)).get("notify_id", "")
        if not any(n.notify_id == notify_id for n in self.notifications):
            return web.json_response({"error": f"no notification {notify_id!r}"}, status=404)
        self.resend(notify_id)
        return web.json_response({"resent": notify_id})

    async def _http_notifications(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"notify_id": n.notify_id, "fields": n.fields, "lost": n.lost, "answers": n.answers}
                for n in self.notifications
            ]
        )


def _ok(**fields: str) -> dict[str, str]:
    return {"code": "10000", "msg": "Success", **fields}


_MSG = {"40001": "Missing Required Arguments", "40002": "Invalid Arguments"}


def _error(code: str, sub_code: str, sub_msg: str = "") -> dict[str, str]:
    return {
        "code": code,
        "msg": _MSG.get(code, "Business Failed"),
        "sub_code": sub_code,
        "sub_msg": sub_msg or sub_code,
    }
