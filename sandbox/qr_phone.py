"""The sandbox "phone": a page on a local WeChat Pay / Alipay host where a person playing the
buyer (the playground, a demo watcher) scans and pays an open order by pressing a button.

A real buyer scans the QR code with the provider's app; nothing on this machine can do that
for a sandbox code, so the host lists the orders that can still be paid (not closed, not
expired, not paid) with their amount, and Pay does exactly what the host's `pay` control does:
the provider's signed notification goes out to our service as it would after a real scan.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from yarl import URL


@dataclass(frozen=True)
class Payable:
    order_no: str  # out_trade_no: our order number
    amount_fen: int
    title: str


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{app} · sandbox phone</title>
<style>
 body {{ margin: 0; font: 16px/1.45 system-ui, sans-serif; background: {bg}; color: #1c2430; }}
 main {{ max-width: 26em; margin: 0 auto; padding: 1.2em; }}
 h1 {{ font-size: 1.2em; color: #fff; }}
 .order {{ background: #fff; border-radius: 12px; padding: 1em; margin: .8em 0; }}
 .amount {{ font-size: 1.6em; font-weight: 700; }}
 .no {{ color: #5b6675; font-size: .9em; }}
 button {{ width: 100%; margin-top: .6em; padding: .7em; border: 0; border-radius: 8px;
          background: {bg}; color: #fff; font-size: 1em; font-weight: 600; }}
 .note {{ background: #fff; border-radius: 12px; padding: .8em 1em; }}
</style></head>
<body><main><h1>{app} · sandbox phone</h1>
{note}{orders}
<p class="note">Orders here can still be paid. Pay sends the provider's signed notification to
the service, as a real scan and payment would.</p>
</main></body></html>"""


def add_phone_routes(
    app: web.Application,
    *,
    app_name: str,
    colour: str,
    payable: Callable[[], Sequence[Payable]],
    pay: Callable[[str], object],
    refused: tuple[type[Exception], ...],
) -> None:
    """Mount GET /sandbox/phone (the list) and POST /sandbox/phone/pay (form: order_no).
    `pay` raises one of `refused` for an order the provider would not let anyone pay
    (closed, expired, paid already); the page then shows its message."""

    async def page(request: web.Request) -> web.Response:
        note = request.query.get("said", "")
        rows = "".join(
            f'<form class="order" method="post" action="/sandbox/phone/pay">'
            f'<div class="amount">¥{p.amount_fen // 100}.{p.amount_fen % 100:02d}</div>'
            f"<div>{html.escape(p.title)}</div>"
            f'<div class="no">{html.escape(p.order_no)}</div>'
            f'<input type="hidden" name="order_no" value="{html.escape(p.order_no)}">'
            f'<button type="submit">Pay</button></form>'
            for p in payable()
        )
        body = _PAGE.format(
            app=html.escape(app_name),
            bg=colour,
            note=f'<p class="note">{html.escape(note)}</p>' if note else "",
            orders=rows or '<p class="note">No order is waiting to be paid.</p>',
        )
        return web.Response(
            text=body, content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    async def pay_route(request: web.Request) -> web.Response:
        order_no = str((await request.post()).get("order_no", ""))[:64]
        try:
            pay(order_no)
            said = f"Paid {order_no}."
        except refused as e:
            said = f"Not paid: {e}"
        raise web.HTTPSeeOther(str(URL("/sandbox/phone").with_query(said=said)))

    app.router.add_get("/sandbox/phone", page)
    app.router.add_post("/sandbox/phone/pay", pay_route)
