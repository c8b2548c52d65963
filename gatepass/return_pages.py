"""The pages a payment provider sends the buyer back to (`success_url` / `cancel_url` of the
checkout): what they bought, for which groups, where the order stands, in their language,
readable on a phone. The invite itself always arrives in the chat; these pages only say so.

A page for an order still being confirmed refreshes itself every few seconds (a plain meta
refresh: no script needed), so it turns into "paid" as soon as the webhook has landed.
"""

from __future__ import annotations

import html

from aiohttp import web

from billing.order_view import OrderView, order_view
from bot.i18n import pick_language, t
from storage.db import Database

REFRESH_SECONDS = 5

_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">{refresh}
<title>{title}</title>
<style>
 body {{ margin: 0; font: 17px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
        background: #f4f6f8; color: #1c2430; }}
 main {{ max-width: 30em; margin: 0 auto; padding: 2em 1.2em; }}
 .card {{ background: #fff; border-radius: 14px; padding: 1.4em 1.3em;
          box-shadow: 0 2px 10px rgba(0,0,0,.06); }}
 h1 {{ font-size: 1.35em; margin: 0 0 .6em; }}
 .state {{ display: inline-block; padding: .15em .7em; border-radius: 1em; font-size: .85em;
           font-weight: 600; margin-bottom: .8em; }}
 .paid {{ background: #e3f6e8; color: #17692f; }}
 .pending {{ background: #fff4d6; color: #7a5300; }}
 .ended {{ background: #eceff3; color: #4a5565; }}
 dl {{ margin: 1em 0 0; display: grid; grid-template-columns: auto 1fr; gap: .3em .9em; }}
 dt {{ color: #5b6675; }} dd {{ margin: 0; font-weight: 600; }}
 p.next {{ margin: 1.2em 0 0; color: #3a4554; }}
</style></head>
<body><main><div class="card" data-order-state="{state}">
<span class="state {badge}">{state_text}</span>
<h1>{title}</h1>
<p>{message}</p>
{details}
</div></main></body></html>"""


def bought_text(view: OrderView, lang: str) -> str:
    """What the order buys, in the buyer's language: the plan's title, or "Top-up 100.00
    CNY (+10.00 CNY bonus)"."""
    if view.kind != "topup":
        return view.plan
    if view.bonus is None or view.bonus.amount_minor <= 0:
        return t("topup_title", lang, amount=str(view.price))
    return t("topup_title_bonus", lang, amount=str(view.price), bonus=str(view.bonus))


def detail_rows(view: OrderView, lang: str) -> list[tuple[str, str]]:
    """The facts both order pages list (a top-up opens no groups)."""
    if view.kind == "topup":
        return [
            (t("page_topup", lang), bought_text(view, lang)),
            (t("page_amount", lang), str(view.price)),
            (t("page_order", lang), view.order_no),
        ]
    return [
        (t("page_plan", lang), view.plan),
        (t("page_groups", lang), ", ".join(view.groups)),
        (t("page_amount", lang), str(view.price)),
        (t("page_order", lang), view.order_no),
    ]


def _details(view: OrderView, lang: str) -> str:
    rows = detail_rows(view, lang)
    return (
        "<dl>"
        + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
        + "</dl>"
    )


def render(view: OrderView, *, returned_paid: bool) -> str:
    """The page for a buyer coming back from the provider (`returned_paid`: through the
    success URL; else through the cancel URL)."""
    lang = pick_language(view.language)
    groups = ", ".join(view.groups)
    plan = bought_text(view, lang)
    # A top-up's texts speak of the wallet, not of an invite.
    k = "page_topup_" if view.kind == "topup" else "page_"
    refresh = ""
    if view.status == "paid" or (view.status == "refunded"):
        state, badge = "paid", "paid"
        title, message = (
            t("page_paid_title", lang),
            t(f"{k}paid", lang, plan=plan, groups=groups),
        )
    elif view.status == "pending" and returned_paid:
        state, badge = "pending", "pending"
        title = t("page_pending_title", lang)
        message = t(f"{k}pending", lang, plan=plan, groups=groups)
        refresh = f'\n<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
    else:
        state, badge = "not_paid", "ended"
        title = t("page_not_paid_title", lang)
        message = t(f"{k}not_paid", lang, plan=plan, groups=groups)
    return _PAGE.format(
        lang="zh-Hans" if lang == "zh" else "en",
        refresh=refresh,
        title=html.escape(title),
        state=state,
        badge=badge,
        state_text=html.escape(t(f"page_state_{state}", lang)),
        message=html.escape(message),
        details=_details(view, lang),
    )


async def return_page(db: Database, order_no: str, *, returned_paid: bool) -> web.Response:
    async with db.session() as s:
        view = await order_view(s, order_no)
    if view is None:
        return web.Response(
            status=404,
            content_type="text/html",
            charset="utf-8",
            text=_PAGE.format(
                lang="en",
                refresh="",
                title=t("page_unknown_title", "en"),
                state="unknown",
                badge="ended",
                state_text=t("page_state_unknown", "en"),
                message=t("page_unknown", "en"),
                details="",
            ),
        )
    return web.Response(
        content_type="text/html", charset="utf-8", text=render(view, returned_paid=returned_paid)
    )
