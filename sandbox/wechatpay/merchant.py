"""One merchant's Native orders and refunds at the local WeChat Pay host, with the rules the
published API v3 documents (error codes included):

- create: the same out_trade_no with the same parameters answers the same code_url; other
  parameters are INVALID_REQUEST (商户订单号重复); a paid order ORDERPAID, a closed one
  ORDER_CLOSED.
- query by out_trade_no (any state) or by transaction_id (paid orders only); an unknown one is
  404 ORDER_NOT_EXIST.
- close: 204; a paid order cannot be closed (400 ORDERPAID); closing twice is fine.
- pay (the buyer scans): only a NOTPAY order before its time_expire; closed orders cannot be.
- refund: by transaction_id; `amount.total` must be the payment's total; the refunds of a
  payment never exceed it (INVALID_REQUEST); the same out_refund_no is the same refund.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sandbox.wechatpay.crypto import random_text

CHINA = timezone(timedelta(hours=8))
_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-*]{6,32}")
_OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
_STATE_DESC = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "CLOSED": "订单已关闭",
    "REFUND": "转入退款",
    "USERPAYING": "用户支付中",
}


class ApiError(Exception):
    """An error answer: HTTP status and WeChat Pay's {"code", "message"}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


def rfc3339(at: datetime) -> str:
    return at.astimezone(CHINA).isoformat(timespec="seconds")


def _digits(n: int) -> str:
    return random_text(n, "0123456789")


@dataclass
class Order:
    out_trade_no: str
    appid: str
    description: str
    total: int
    notify_url: str
    time_expire: datetime | None
    code_url: str
    created_at: datetime
    state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: datetime | None = None
    openid: str | None = None
    refunded: int = 0

    def params(self) -> tuple[Any, ...]:
        return (self.appid, self.description, self.total, self.notify_url, self.time_expire)

    def as_json(self, mchid: str) -> dict[str, Any]:
        """The query answer (GET .../out-trade-no/{no} and .../id/{id})."""
        out: dict[str, Any] = {
            "appid": self.appid,
            "mchid": mchid,
            "out_trade_no": self.out_trade_no,
            "trade_type": "NATIVE",
            "trade_state": self.state,
            "trade_state_desc": _STATE_DESC.get(self.state, self.state),
            "attach": "",
            "amount": {"total": self.total, "currency": "CNY", "payer_currency": "CNY"},
        }
        if self.transaction_id is not None:
            assert self.success_time is not None
            out |= {
                "transaction_id": self.transaction_id,
                "bank_type": "OTHERS",
                "success_time": rfc3339(self.success_time),
                "payer": {"openid": self.openid},
            }
            out["amount"]["payer_total"] = self.total
        return out


@dataclass
class Refund:
    refund_id: str
    out_refund_no: str
    order: Order
    refund: int
    reason: str
    notify_url: str
    created_at: datetime
    status: str = "PROCESSING"
    success_time: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        """The refund answer (POST /v3/refund/domestic/refunds)."""
        out: dict[str, Any] = {
            "refund_id": self.refund_id,
            "out_refund_no": self.out_refund_no,
            "transaction_id": self.order.transaction_id,
            "out_trade_no": self.order.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": rfc3339(self.created_at),
            "status": self.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": self.order.total,
                "refund": self.refund,
                "payer_total": self.order.total,
                "payer_refund": self.refund,
                "settlement_refund": self.refund,
                "settlement_total": self.order.total,
                "discount_refund": 0,
                "currency": "CNY",
                "refund_fee": 0,
            },
        }
        if self.success_time is not None:
            out["success_time"] = rfc3339(self.success_time)
        return out

    def notice(self, mchid: str) -> dict[str, Any]:
        """The decrypted resource of its REFUND.* notification."""
        out: dict[str, Any] = {
            "mchid": mchid,
            "out_trade_no": self.order.out_trade_no,
            "transaction_id": self.order.transaction_id,
            "out_refund_no": self.out_refund_no,
            "refund_id": self.refund_id,
            "refund_status": self.status,
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": self.order.total,
                "refund": self.refund,
                "payer_total": self.order.total,
                "payer_refund": self.refund,
            },
        }
        if self.success_time is not None:
            out["success_time"] = rfc3339(self.success_time)
        return out


def _need(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) or value in ("", None):
        raise ApiError(
            400, "PARAM_ERROR", f"输入源“/body/{key}”映射到字段“{key}”必填性规则校验失败"
        )
    return value


def _time(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "PARAM_ERROR", "time_expire 格式错误 (rfc3339)") from None
    if at.tzinfo is None:
        raise ApiError(400, "PARAM_ERROR", "time_expire 需带时区 (rfc3339)")
    return at


@dataclass
class Merchant:
    mchid: str
    appid: str
    orders: dict[str, Order] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)  # by out_refund_no
    balance_short: bool = False  # a test control: refunds answer 403 NOT_ENOUGH

    def create_native(self, body: dict[str, Any], now: datetime) -> Order:
        if body.get("mchid") != self.mchid:
            raise ApiError(400, "PARAM_ERROR", "mchid 与请求头中的商户号不一致")
        if body.get("appid") != self.appid:
            raise ApiError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        description = _need(body, "description", str)
        if len(description.encode("utf-8")) > 127:
            raise ApiError(400, "PARAM_ERROR", "description 超过127字节")
        no = _need(body, "out_trade_no", str)
        if not _OUT_TRADE_NO.fullmatch(no):
            raise ApiError(400, "PARAM_ERROR", "out_trade_no 只能是6-32位数字、大小写字母_-*")
        notify_url = _need(body, "notify_url", str)
        if not notify_url.startswith("https://") and not notify_url.startswith(
            ("http://127.0.0.1", "http://localhost")  # the sandbox's own loopback only
        ):
            raise ApiError(400, "PARAM_ERROR", "notify_url 必须为https地址")
        amount = _need(body, "amount", dict)
        total = _need(amount, "total", int)
        if total < 1:
            raise ApiError(400, "PARAM_ERROR", "amount.total 必须大于0")
        if amount.get("currency", "CNY") != "CNY":
            raise ApiError(400, "PARAM_ERROR", "amount.currency 只支持CNY")
        expire = _time(body["time_expire"]) if "time_expire" in body else None
        if expire is not None and expire <= now:
            raise ApiError(400, "PARAM_ERROR", "time_expire 必须晚于当前时间")
        old = self.orders.get(no)
        if old is not None:
            if old.state in ("SUCCESS", "REFUND"):
                raise ApiError(400, "ORDERPAID", "该订单已支付")
            if old.state == "CLOSED":
                raise ApiError(400, "ORDER_CLOSED", "订单已关闭")
            if old.params() != (self.appid, description, total, notify_url, expire):
                raise ApiError(400, "INVALID_REQUEST", "201 商户订单号重复")
            return old
        order = Order(
            out_trade_no=no,
            appid=self.appid,
            description=description,
            total=total,
            notify_url=notify_url,
            time_expire=expire,
            code_url=f"weixin://wxpay/bizpayurl?pr={random_text(7)}",
            created_at=now,
        )
        self.orders[no] = order
        return order

    def order(self, out_trade_no: str) -> Order:
        order = self.orders.get(out_trade_no)
        if order is None:
            raise ApiError(404, "ORDER_NOT_EXIST", "订单不存在")
        return order

    def by_transaction(self, transaction_id: str) -> Order:
        for order in self.orders.values():
            if order.transaction_id == transaction_id:
                return order
        raise ApiError(404, "ORDER_NOT_EXIST", "订单不存在")

    def by_code_url(self, code_url: str) -> Order:
        for order in self.orders.values():
            if order.code_url == code_url:
                return order
        raise ApiError(404, "ORDER_NOT_EXIST", "二维码无效")

    def close(self, out_trade_no: str) -> None:
        order = self.order(out_trade_no)
        if order.state in ("SUCCESS", "REFUND"):
            raise ApiError(400, "ORDERPAID", "订单已支付，不能关单")
        if order.state == "USERPAYING":
            raise ApiError(400, "TRADE_ERROR", "用户支付中，不能关单")
        order.state = "CLOSED"

    def _payable(self, order: Order, now: datetime) -> None:
        if order.state == "CLOSED":
            raise ApiError(400, "ORDER_CLOSED", "订单已关闭，无法支付")
        if order.state != "NOTPAY":
            raise ApiError(400, "ORDERPAID", "订单已支付")
        if order.time_expire is not None and now >= order.time_expire:
            raise ApiError(400, "ORDER_CLOSED", "订单已过支付截止时间")

    def begin_paying(self, out_trade_no: str, now: datetime) -> Order:
        """The buyer scanned and is confirming (USERPAYING): the order cannot be closed, and
        the payment completes even after time_expire."""
        order = self.order(out_trade_no)
        self._payable(order, now)
        order.state = "USERPAYING"
        return order

    def pay(self, out_trade_no: str, now: datetime) -> Order:
        """The buyer scans the code and pays (or finishes a payment begun before). ApiError
        when WeChat would not let them."""
        order = self.order(out_trade_no)
        if order.state != "USERPAYING":
            self._payable(order, now)
        order.state = "SUCCESS"
        order.transaction_id = "4200" + _digits(24)
        order.success_time = now.astimezone(UTC)
        order.openid = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
        return order

    def refund(self, body: dict[str, Any], now: datetime) -> tuple[Refund, bool]:
        """(the refund, True if it is new). A repeated out_refund_no is the refund it named."""
        no = _need(body, "out_refund_no", str)
        if not _OUT_REFUND_NO.fullmatch(no):
            raise ApiError(400, "PARAM_ERROR", "out_refund_no 格式错误")
        if "transaction_id" in body:
            order = self.by_transaction(_need(body, "transaction_id", str))
        else:
            order = self.order(_need(body, "out_trade_no", str))
        amount = _need(body, "amount", dict)
        refund, total = _need(amount, "refund", int), _need(amount, "total", int)
        if amount.get("currency", "CNY") != "CNY":
            raise ApiError(400, "PARAM_ERROR", "amount.currency 只支持CNY")
        old = self.refunds.get(no)
        if old is not None:
            if old.order is not order or old.refund != refund:
                raise ApiError(400, "INVALID_REQUEST", "同一退款单号参数不一致")
            return old, False
        if order.state not in ("SUCCESS", "REFUND"):
            raise ApiError(400, "INVALID_REQUEST", "订单未支付，不能退款")
        if total != order.total:
            raise ApiError(400, "INVALID_REQUEST", "订单金额与原订单不一致")
        if refund < 1 or refund > order.total - order.refunded:
            raise ApiError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        if self.balance_short:
            raise ApiError(403, "NOT_ENOUGH", "基本账户余额不足，请充值后重新发起")
        notify_url = body.get("notify_url")
        made = Refund(
            refund_id="5030" + _digits(25),
            out_refund_no=no,
            order=order,
            refund=refund,
            reason=str(body.get("reason") or ""),
            notify_url=notify_url if isinstance(notify_url, str) else order.notify_url,
            created_at=now,
        )
        order.refunded += refund
        order.state = "REFUND"
        self.refunds[no] = made
        return made, True

    def settle_refund(self, refund: Refund, now: datetime, status: str = "SUCCESS") -> None:
        refund.status = status
        if status == "SUCCESS":
            refund.success_time = now
        else:  # the money did not go back: it is the order's again
            refund.order.refunded -= refund.refund
            if refund.order.refunded == 0:
                refund.order.state = "SUCCESS"
