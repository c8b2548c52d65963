"""The sandbox provider's checkout page: what a buyer sees instead of a bank.

Pressing Pay signs a `payment.succeeded` notification with the sandbox webhook secret and
POSTs it over HTTP to our own /webhooks/sandbox, so the grant takes the very path a real
provider's webhook takes (verification, dedupe, one transaction, outbox).

One order is one payment, however often Pay is pressed (a double click, a reload, two tabs):
every press names the same payment id, as a bank's retried request names one charge, so the
ledger records the charge once. Mounted by the demo, the playground and the tests only
(gatepass.web takes it as an injected route mount); `gatepass run` refuses a [sandbox_pay]
section.

The page names the plan and its groups, speaks the buyer's language (English or Simplified
Chinese, from the buyer's stored `user.language`) and says on every screen that no money
moves. Each page carries `data-status` (open | paid | already_paid | failed) on its body so
programs can tell the outcome without reading a language.
"""

from __future__ import annotations

import html
import json
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from sqlalchemy import select
from sqlmodel import col

from billing.providers.sandbox_provider import SIGNATURE_HEADER, sign
from billing.topup import topup_title
from storage.db import Database
from storage.models import ChatGroup, Order, Plan, PlanGroup, TopupProduct, User
from storage.money import Money


class CheckoutHost(Protocol):
    """What the page needs of the service it is mounted on (the sandbox never imports the
    application shell: the shell imports it, in the demo's wiring only)."""

    db: Database
    settings: Any  # gatepass.config.Settings: its sandbox_pay secret and web.public_url


# The page's own words, in the two languages the bot speaks. (They live here, next to the
# only page that uses them; the bot's texts have their own catalogs.)
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Checkout",
        "summary": "Order summary",
        "banner": "TEST PAYMENT — no money moves",
        "banner_sub": "Sandbox checkout: nothing is charged to any card or account.",
        "plan": "Plan",
        "groups": "Access to",
        "period": "Access",
        "days": "{n} days",
        "lifetime": "Lifetime",
        "order": "Order",
        "total": "Total",
        "pay": "Pay {price}",
        "open": "Pressing Pay simulates a successful payment.",
        "paid_h": "Payment received",
        "paid": "Paid. Your invite is on its way in the chat.",
        "already_h": "Already paid",
        "already": "Already paid. Your invite is in the chat.",
        "failed_h": "Payment not confirmed",
        "failed": "The payment notification failed (HTTP {status}); press Pay again.",
        "back": "You can close this page and go back to the chat.",
        "topup_to": "Goes to",
        "wallet": "Your wallet balance",
        "topup_paid": "Paid. The balance is in your wallet; the bot confirms it in the chat.",
        "topup_already": "Already paid. The balance is in your wallet.",
    },
    "zh": {
        "title": "结账",
        "summary": "订单详情",
        "banner": "测试支付 — 不会产生真实扣款",
        "banner_sub": "沙盒结账：不会从任何银行卡或账户扣款。",
        "plan": "套餐",
        "groups": "可加入",
        "period": "有效期",
        "days": "{n} 天",
        "lifetime": "永久",
        "order": "订单号",
        "total": "合计",
        "pay": "支付 {price}",
        "open": "点击支付即模拟一次成功的付款。",
        "paid_h": "支付成功",
        "paid": "已支付。邀请链接即将发送到聊天中。",
        "already_h": "已经支付",
        "already": "此订单已经支付。邀请链接在聊天中。",
        "failed_h": "支付未确认",
        "failed": "支付通知失败（HTTP {status}），请再次点击支付。",
        "back": "你可以关闭此页面，回到聊天。",
        "topup_to": "充值到",
        "wallet": "你的钱包余额",
        "topup_paid": "已支付。余额已存入钱包，机器人会在聊天中确认。",
        "topup_already": "此订单已经支付。余额已在钱包中。",
    },
}

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f2f4f7;color:#1c2430;-webkit-text-size-adjust:100%;
font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","PingFang SC",
"Microsoft YaHei",sans-serif}
.banner{position:sticky;top:0;z-index:1;background:repeating-linear-gradient(135deg,#ffd43b 0 14px,
#fcc419 14px 28px);color:#3b2f00;text-align:center;padding:.7em 1em;
border-bottom:2px solid #e8a800}
.banner strong{display:block;font-size:1.05em;letter-spacing:.04em}
.banner span{font-size:.85em}
main{max-width:30em;margin:0 auto;padding:1.2em 1em 2em}
.card{background:#fff;border-radius:16px;box-shadow:0 1px 3px rgba(16,24,40,.1),
0 4px 16px rgba(16,24,40,.06);padding:1.4em 1.3em}
h1{font-size:1.15em;margin:0 0 1em;color:#475467;font-weight:600}
.amount{font-size:2.6em;font-weight:700;letter-spacing:-.01em;margin:.1em 0 .5em;
font-variant-numeric:tabular-nums}
.plan{font-size:1.25em;font-weight:600;margin:0}
dl{margin:1em 0 0;display:grid;grid-template-columns:auto 1fr;gap:.45em 1em}
dt{color:#667085}
dd{margin:0;text-align:right;font-weight:500;overflow-wrap:anywhere}
.pay{display:block;width:100%;margin-top:1.4em;padding:1em;font:inherit;font-size:1.2em;
font-weight:700;color:#fff;background:#0b6bcb;border:0;border-radius:12px;min-height:3.3em;
cursor:pointer;box-shadow:0 2px 6px rgba(11,107,203,.35)}
.pay:active{background:#08529c}
.note{color:#667085;font-size:.92em;margin:.9em 0 0;text-align:center}
.result{text-align:center;margin-bottom:1em}
.icon{width:3.2em;height:3.2em;line-height:3.2em;border-radius:50%;margin:0 auto .5em;
font-size:1.6em;font-weight:700;color:#fff}
.ok .icon{background:#12b76a}.fail .icon{background:#f04438}
.result h2{margin:0 0 .3em;font-size:1.35em}
.result p{margin:0;color:#344054}
"""

_PAGE = """<!doctype html>
<html lang="{lang_attr}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {banner}</title><style>{css}</style></head>
<body data-status="{status}">
<div class="banner" role="alert"><strong>{banner}</strong><span>{banner_sub}</span></div>
<main><div class="card">{result}<h1>{title}</h1>
<p class="plan">{plan_title}</p>
<div class="amount">{price}</div>
<dl><dt>{groups_label}</dt><dd>{groups}</dd><dt>{period_label}</dt><dd>{period}</dd>
<dt>{order_label}</dt><dd>{order_no}</dd></dl>
{form}<p class="note">{note}</p></div></main></body></html>"""
_FORM = '<form method="post"><button class="pay" type="submit">{label}</button></form>'
_RESULT = (
    '<div class="result {cls}"><div class="icon" aria-hidden="true">{icon}</div>'
    "<h2>{heading}</h2><p>{text}</p></div>"
)


@dataclass(frozen=True)
class OrderView:
    """An order as the buyer sees it: what they buy, for how much, in which language."""

    order: Order
    plan_title: str
    duration_days: int | None
    groups: list[str]
    lang: str
    topup: bool = False  # a wallet top-up: it buys a balance, not a plan's access


def payment_id(order_no: str) -> str:
    """The sandbox payment of an order: one per order, so a second press is the same charge."""
    return f"sbxpay_{order_no}"


def page_language(stored: str | None) -> str:
    """The buyer's language as the bot picks it: any Chinese -> "zh", everything else "en"."""
    return "zh" if (stored or "").lower().startswith("zh") else "en"


def add_routes(app: web.Application, service: CheckoutHost) -> None:
    async def load(order_no: str) -> OrderView | None:
        async with service.db.session() as s:
            order = (
                await s.execute(
                    select(Order).where(
                        col(Order.order_no) == order_no, col(Order.provider) == "sandbox"
                    )
                )
            ).scalar_one_or_none()
            if order is None:
                return None
            language = (
                await s.execute(select(col(User.language)).where(col(User.id) == order.user_id))
            ).scalar_one_or_none()
            if order.topup_id is not None:
                product = await s.get(TopupProduct, order.topup_id)
                title = topup_title(product) if product is not None else order.order_no
                return OrderView(order, title, None, [], page_language(language), topup=True)
            plan = (await s.execute(select(Plan).where(col(Plan.id) == order.plan_id))).scalar_one()
            groups = (
                (
                    await s.execute(
                        select(col(ChatGroup.title))
                        .join(PlanGroup, col(PlanGroup.chat_group_id) == col(ChatGroup.id))
                        .where(col(PlanGroup.plan_id) == plan.id)
                        .order_by(col(ChatGroup.id))
                    )
                )
                .scalars()
                .all()
            )
        return OrderView(
            order, plan.title, plan.duration_days, list(groups), page_language(language)
        )

    def page(view: OrderView, status: str, *, http_status: int | None = None) -> web.Response:
        tx = TEXTS[view.lang]
        order = view.order
        price = html.escape(str(Money(order.amount_minor, order.currency)))
        result = ""
        if status == "paid":
            text = tx["topup_paid" if view.topup else "paid"]
            result = _RESULT.format(cls="ok", icon="✓", heading=tx["paid_h"], text=text)
        elif status == "already_paid":
            text = tx["topup_already" if view.topup else "already"]
            result = _RESULT.format(cls="ok", icon="✓", heading=tx["already_h"], text=text)
        elif status == "failed":
            result = _RESULT.format(
                cls="fail",
                icon="!",
                heading=tx["failed_h"],
                text=html.escape(tx["failed"].format(status=http_status)),
            )
        with_form = status in ("open", "failed")
        period = (
            "—"
            if view.topup
            else tx["lifetime"]
            if view.duration_days is None
            else tx["days"].format(n=view.duration_days)
        )
        return web.Response(
            content_type="text/html",
            text=_PAGE.format(
                lang_attr="zh-Hans" if view.lang == "zh" else "en",
                css=_CSS,
                status=status,
                title=tx["title"] if with_form else tx["summary"],
                banner=tx["banner"],
                banner_sub=tx["banner_sub"],
                result=result,
                plan_title=html.escape(view.plan_title),
                price=price,
                groups_label=tx["topup_to" if view.topup else "groups"],
                groups=html.escape(tx["wallet"])
                if view.topup
                else "<br>".join(html.escape(g) for g in view.groups) or "—",
                period_label=tx["period"],
                period=html.escape(period),
                order_label=tx["order"],
                order_no=html.escape(order.order_no),
                form=_FORM.format(label=tx["pay"].format(price=price)) if with_form else "",
                note=tx["open"] if with_form else tx["back"],
            ),
        )

    async def show(request: web.Request) -> web.Response:
        view = await load(request.match_info["order_no"])
        if view is None:
            return web.Response(status=404, text="no such sandbox order")
        return page(view, "already_paid" if view.order.status == "paid" else "open")

    async def pay(request: web.Request) -> web.Response:
        view = await load(request.match_info["order_no"])
        if view is None:
            return web.Response(status=404, text="no such sandbox order")
        order = view.order
        if order.status == "paid":
            return page(view, "already_paid")
        body = json.dumps(
            {
                "id": f"sbxevt_{secrets.token_hex(8)}",
                "type": "payment.succeeded",
                "order_no": order.order_no,
                "amount_minor": order.amount_minor,
                "currency": order.currency,
                "payment_id": payment_id(order.order_no),
            }
        ).encode()
        assert service.settings.sandbox_pay is not None
        secret = service.settings.sandbox_pay.webhook_secret.get_secret_value()
        url = f"{service.settings.web.public_url}/webhooks/sandbox"
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url,
                data=body,
                headers={SIGNATURE_HEADER: sign(body, secret), "Content-Type": "application/json"},
            ) as resp,
        ):
            status = resp.status
        if status == 200:
            return page(view, "paid")
        return page(view, "failed", http_status=status)

    app.router.add_get("/sandbox/pay/{order_no}", show)
    app.router.add_post("/sandbox/pay/{order_no}", pay)
