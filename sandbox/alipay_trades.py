"""The trades of the local Alipay gateway (sandbox/alipay_host.py): face-to-face trades as
Alipay's published protocol describes them, without any HTTP or signing.

A precreated order is not a trade yet: `alipay.trade.query` and `alipay.trade.close` answer
ACQ.TRADE_NOT_EXIST until the buyer scans its code (the trade is then WAIT_BUYER_PAY). A code
stops working at its time_expire; a closed trade cannot be paid; refunds are idempotent by
out_request_no and never exceed what was paid. Business errors are `Refusal`s carrying the
real sub_code (answered as code 40004 "Business Failed").
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

SHANGHAI = timezone(timedelta(hours=8))
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_YUAN = re.compile(r"\A(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?\Z")
MAX_FEN = 100_000_000 * 100  # Alipay's limit: 100,000,000.00 yuan
BUYER_LOGON_ID = "159****5620"  # how Alipay shows a buyer (masked phone number)
BUYER_ID = "2088102177846875"


class Refusal(Exception):
    """A business failure: answered as code 40004 with this sub_code and sub_msg."""

    def __init__(self, sub_code: str, sub_msg: str, code: str = "40004") -> None:
        super().__init__(f"{sub_code}: {sub_msg}")
        self.code, self.sub_code, self.sub_msg = code, sub_code, sub_msg


def invalid(sub_code: str, sub_msg: str) -> Refusal:
    """A bad parameter: code 40002 "Invalid Arguments"."""
    return Refusal(sub_code, sub_msg, "40002")


def to_fen(text: Any, name: str) -> int:
    if not isinstance(text, str | int | float) or not _YUAN.match(str(text)):
        raise invalid("isv.invalid-parameter", f"{name} 格式错误")
    fen = int(Decimal(str(text)) * 100)
    if not 1 <= fen <= MAX_FEN:
        raise invalid(f"ACQ.{name.upper()}_INVALID", f"{name} 超出范围")
    return fen


def to_yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def bj(when: datetime) -> str:
    return when.astimezone(SHANGHAI).strftime(TIME_FORMAT)


def parse_bj(text: str, name: str) -> datetime:
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=SHANGHAI)
    except (ValueError, TypeError):
        raise invalid("isv.invalid-parameter", f"{name} 格式错误: {text!r}") from None


@dataclass
class Refund:
    out_request_no: str
    fen: int
    at: datetime


@dataclass
class Trade:
    out_trade_no: str
    total_fen: int
    subject: str
    notify_url: str
    qr_token: str
    time_expire: datetime | None
    # None until scanned (no trade at Alipay yet), then WAIT_BUYER_PAY, TRADE_SUCCESS,
    # TRADE_FINISHED or TRADE_CLOSED.
    status: str | None = None
    trade_no: str = ""
    created_at: datetime | None = None
    paid_at: datetime | None = None
    refunds: dict[str, Refund] = field(default_factory=dict)

    @property
    def qr_code(self) -> str:
        return f"https://qr.alipay.com/{self.qr_token}"

    @property
    def refunded_fen(self) -> int:
        return sum(r.fen for r in self.refunds.values())

    def facts(self) -> dict[str, str]:
        """The fields query answers and notifications share."""
        out = {
            "trade_no": self.trade_no,
            "out_trade_no": self.out_trade_no,
            "buyer_logon_id": BUYER_LOGON_ID,
            "buyer_user_id": BUYER_ID,
            "trade_status": self.status or "",
            "total_amount": to_yuan(self.total_fen),
        }
        if self.status in ("TRADE_SUCCESS", "TRADE_FINISHED") or self.paid_at:
            out |= {
                "receipt_amount": to_yuan(self.total_fen),
                "buyer_pay_amount": to_yuan(self.total_fen),
                "invoice_amount": to_yuan(self.total_fen),
            }
        if self.paid_at is not None:
            out["send_pay_date"] = bj(self.paid_at)
        return out


class TradeBook:
    """Every trade by out_trade_no, with the transitions the protocol allows."""

    def __init__(self) -> None:
        self.trades: dict[str, Trade] = {}
        self.by_qr: dict[str, str] = {}
        # Test control: refunds beyond this (fen) fail with ACQ.SELLER_BALANCE_NOT_ENOUGH.
        self.seller_balance_fen: int | None = None
        self.timed_out: list[Trade] = []  # closed at time_expire, not yet notified

    def _expire(self, t: Trade, now: datetime) -> None:
        """Alipay closes an unpaid trade at its time_expire on its own."""
        if t.status in (None, "WAIT_BUYER_PAY") and t.time_expire and now >= t.time_expire:
            if t.status:
                t.status = "TRADE_CLOSED"
                self.timed_out.append(t)  # a trade closed: Alipay notifies it
            else:
                t.status = "EXPIRED_UNSCANNED"

    def find(self, biz: dict[str, Any], now: datetime) -> Trade:
        """The scanned trade named by trade_no or out_trade_no, or ACQ.TRADE_NOT_EXIST."""
        t: Trade | None = None
        if biz.get("trade_no"):
            t = next((x for x in self.trades.values() if x.trade_no == biz["trade_no"]), None)
        elif biz.get("out_trade_no"):
            t = self.trades.get(str(biz["out_trade_no"]))
        else:
            raise Refusal("isv.missing-parameter", "out_trade_no 和 trade_no 不能同时为空", "40001")
        if t is not None:
            self._expire(t, now)
        if t is None or t.status in (None, "EXPIRED_UNSCANNED"):
            raise Refusal("ACQ.TRADE_NOT_EXIST", "交易不存在")
        return t

    def precreate(self, biz: dict[str, Any], notify_url: str, now: datetime) -> Trade:
        no = biz.get("out_trade_no")
        if not isinstance(no, str) or not 1 <= len(no) <= 64:
            raise Refusal("isv.missing-parameter", "缺少必选参数 out_trade_no", "40001")
        if not isinstance(biz.get("subject"), str) or not biz["subject"]:
            raise Refusal("isv.missing-parameter", "缺少必选参数 subject", "40001")
        if any(c in biz["subject"] for c in "/=&"):  # "不可使用特殊字符，如 /，=，& 等"
            raise invalid("isv.invalid-parameter", "subject 不可使用特殊字符，如 /，=，& 等")
        fen = to_fen(biz.get("total_amount"), "total_amount")
        expire = biz.get("time_expire")
        time_expire = parse_bj(expire, "time_expire") if expire else None
        t = self.trades.get(no)
        if t is not None:
            self._expire(t, now)
            if t.status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                raise Refusal("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
            if t.status in ("TRADE_CLOSED", "EXPIRED_UNSCANNED"):
                raise Refusal("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            if t.total_fen != fen:
                raise Refusal("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            return t  # the same order again: the same code
        if time_expire is not None and time_expire <= now:
            raise invalid("isv.invalid-parameter", "time_expire 已过期")
        t = Trade(no, fen, biz["subject"], notify_url, secrets.token_urlsafe(18), time_expire)
        self.trades[no] = t
        self.by_qr[t.qr_code] = no
        return t

    def scan(self, out_trade_no: str | None, qr_code: str | None, now: datetime) -> Trade:
        """The buyer scans the code: the trade exists from now on (WAIT_BUYER_PAY)."""
        no = out_trade_no or self.by_qr.get(qr_code or "")
        t = self.trades.get(no or "")
        if t is None:
            raise Refusal("ACQ.TRADE_NOT_EXIST", "二维码无效")
        self._expire(t, now)
        if t.status in ("TRADE_CLOSED", "EXPIRED_UNSCANNED"):
            raise Refusal("ACQ.TRADE_HAS_CLOSE", "交易已经关闭，二维码失效")
        if t.status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
            raise Refusal("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
        if t.status is None:
            t.status, t.created_at = "WAIT_BUYER_PAY", now
            t.trade_no = (
                now.astimezone(SHANGHAI).strftime("%Y%m%d")
                + "22001"
                + ("".join(secrets.choice("0123456789") for _ in range(15)))
            )
        return t

    def pay(self, t: Trade, now: datetime) -> Trade:
        self._expire(t, now)
        if t.status != "WAIT_BUYER_PAY":
            raise Refusal("ACQ.TRADE_STATUS_ERROR", f"交易状态不合法 ({t.status})")
        t.status, t.paid_at = "TRADE_SUCCESS", now
        return t

    def finish(self, t: Trade) -> Trade:
        if t.status != "TRADE_SUCCESS":
            raise Refusal("ACQ.TRADE_STATUS_ERROR", f"交易状态不合法 ({t.status})")
        t.status = "TRADE_FINISHED"
        return t

    def close(self, biz: dict[str, Any], now: datetime) -> Trade:
        t = self.find(biz, now)
        if t.status != "WAIT_BUYER_PAY":
            raise Refusal("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        t.status = "TRADE_CLOSED"
        return t

    def refund(self, biz: dict[str, Any], now: datetime) -> tuple[Trade, Refund, bool]:
        """The refund and whether money moved now (False: the same out_request_no before)."""
        t = self.find(biz, now)
        fen = to_fen(biz.get("refund_amount"), "refund_amount")
        request_no = str(biz.get("out_request_no") or t.out_trade_no)
        earlier = t.refunds.get(request_no)
        if earlier is not None:
            return t, earlier, False  # a repeat: the earlier result, nothing moves
        if t.status == "TRADE_FINISHED":
            raise Refusal("ACQ.TRADE_HAS_FINISHED", "交易已完结")
        if t.status != "TRADE_SUCCESS":
            raise Refusal("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if t.refunded_fen + fen > t.total_fen:
            raise Refusal("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
        if self.seller_balance_fen is not None:
            if fen > self.seller_balance_fen:
                raise Refusal("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足")
            self.seller_balance_fen -= fen
        r = Refund(request_no, fen, now)
        t.refunds[request_no] = r
        if t.refunded_fen == t.total_fen:
            t.status = "TRADE_CLOSED"  # refunded in full
        return t, r, True
