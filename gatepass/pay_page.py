"""The QR pay page, `GET /pay/<order_no>`: the order's QR code to scan with WeChat or
Alipay, the plan and amount, and a countdown to the order's timeout, in the buyer's
language, on a phone-width screen. It polls `/pay/<order_no>/status` every couple of
seconds and turns into "paid — your invite is in the chat" (or "expired" / "closed", the
code hidden) without a reload; without JavaScript a meta refresh does the same more slowly.

GET only, read only: the page never grants or changes anything (payments reach us through
the provider's webhook, reconciliation, or "I have paid" in the chat). The order number is
the only key (unguessable, like the return pages'), checked for its shape before the
database is asked. Nothing is cached: the state changes under the page, and the QR image
is served only while the order can still be paid.
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Mapping

from aiohttp import web

from billing.order_view import OrderView, order_view
from billing.pay_view import PayState, PayView, pay_view
from billing.provider import PaymentProvider, QrPaymentProvider
from billing.qr_image import qr_png
from bot.i18n import LANGUAGES, has, pick_language, t
from gatepass.return_pages import detail_rows
from storage.clock import Clock
from storage.db import Database

POLL_SECONDS = 2
NO_JS_REFRESH_SECONDS = 5
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the order number is in the URL
    "X-Content-Type-Options": "nosniff",
}

_PAGE = """<!doctype html>
<html lang="{html_lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">{refresh}
<title>{title}</title>
<style>
 body {{ margin: 0; font: 17px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
        background: #f4f6f8; color: #1c2430; }}
 main {{ max-width: 30em; margin: 0 auto; padding: 1.2em 1em 2em; }}
 .card {{ background: #fff; border-radius: 14px; padding: 1.2em 1.2em 1.4em;
          box-shadow: 0 2px 10px rgba(0,0,0,.06); }}
 h1 {{ font-size: 1.3em; margin: 0 0 .4em; }}
 .state {{ display: inline-block; padding: .15em .7em; border-radius: 1em; font-size: .85em;
           font-weight: 600; margin-bottom: .7em; }}
 .s-paid {{ background: #e3f6e8; color: #17692f; }}
 .s-pending {{ background: #fff4d6; color: #7a5300; }}
 .s-expired, .s-closed {{ background: #eceff3; color: #4a5565; }}
 .qr {{ display: block; width: min(280px, 72vw); height: auto; margin: .4em auto;
        image-rendering: pixelated; }}
 .amount {{ text-align: center; font-size: 1.7em; font-weight: 700; margin: .1em 0; }}
 .scan {{ text-align: center; margin: .2em 0 .6em; }}
 .left {{ text-align: center; color: #5b6675; }}
 .left b {{ color: #1c2430; font-variant-numeric: tabular-nums; font-size: 1.15em; }}
 .hint {{ font-size: .85em; color: #5b6675; margin: .9em 0 0; }}
 dl {{ margin: 1em 0 0; display: grid; grid-template-columns: auto 1fr; gap: .3em .9em; }}
 dt {{ color: #5b6675; }} dd {{ margin: 0; font-weight: 600; overflow-wrap: anywhere; }}
 .card > section {{ display: none; }}
 .card[data-order-state="pending"] .v-pending, .card[data-order-state="paid"] .v-paid,
 .card[data-order-state="expired"] .v-expired, .card[data-order-state="closed"] .v-closed
   {{ display: block; }}
</style></head>
<body><main><div class="card" data-order-state="{state}" data-status-url="{status_url}"
 data-seconds-left="{seconds_left}" data-final="{final}">
<section class="v-pending">
<span class="state s-pending">{waiting}</span>
<h1>{pay_title}</h1>
{qr}
<p class="amount">{amount}</p>
<p class="scan">{scan}</p>
<p class="left">{time_left_label}: <b id="countdown">{countdown}</b></p>
<p class="hint">{hint}</p>
</section>
<section class="v-paid">
<span class="state s-paid">{paid_badge}</span>
<h1>{paid_title}</h1>
<p>{paid_text}</p>
</section>
<section class="v-expired">
<span class="state s-expired">{expired_badge}</span>
<h1>{expired_title}</h1>
<p>{expired_text}</p>
</section>
<section class="v-closed">
<span class="state s-closed">{closed_badge}</span>
<h1>{closed_title}</h1>
<p>{closed_text}</p>
</section>
{details}
</div></main>
<script nonce="{nonce}">
(function () {{
  var card = document.querySelector(".card"), clock = document.getElementById("countdown");
  var deadline = Date.now() + Number(card.dataset.secondsLeft) * 1000;
  function show(state) {{
    if (card.dataset.orderState === state) return;
    card.dataset.orderState = state;
    var heading = card.querySelector(".v-" + state + " h1");
    if (heading) document.title = heading.textContent;
    if (state !== "pending") {{
      var img = document.querySelector("img.qr");
      if (img) img.removeAttribute("src");
    }}
  }}
  function tick() {{
    var s = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    clock.textContent = String(Math.floor(s / 60)).padStart(2, "0") + ":" +
      String(s % 60).padStart(2, "0");
  }}
  // Polled until the state is final: an expired order paid in its last seconds still
  // turns "paid" (the server says when nothing can change any more).
  function poll() {{
    if (card.dataset.final === "true") return;
    fetch(card.dataset.statusUrl, {{cache: "no-store"}})
      .then(function (r) {{ return r.ok ? r.json() : null; }})
      .then(function (st) {{
        if (st) {{
          deadline = Date.now() + st.seconds_left * 1000; show(st.state);
          card.dataset.final = st.final ? "true" : "false";
        }}
      }})
      .catch(function () {{}})
      .then(function () {{
        if (card.dataset.final !== "true") setTimeout(poll, {poll_ms});
      }});
  }}
  if (card.dataset.orderState === "pending") {{ tick(); setInterval(tick, 1000); }}
  if (card.dataset.final !== "true") setTimeout(poll, {poll_ms});
}})();
</script></body></html>"""

_NOT_FOUND = """<!doctype html>
<html lang="{html_lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style> body {{ font: 17px/1.5 system-ui, sans-serif; background: #f4f6f8; color: #1c2430;
  margin: 0; }} main {{ max-width: 30em; margin: 0 auto; padding: 2em 1.2em; }} </style>
</head><body><main data-order-state="unknown"><h1>{title}</h1><p>{message}</p></main>
</body></html>"""


def _lang(request: web.Request, stored: str | None) -> str:
    """`?lang=en|zh` wins (a buyer showing the page to someone else); else the buyer's;
    with no buyer (an unknown order), the browser's Accept-Language."""
    asked = request.query.get("lang", "")
    if asked in LANGUAGES:
        return asked
    return pick_language(stored or _browser_language(request.headers.get("Accept-Language", "")))


def _browser_language(header: str) -> str | None:
    """The first of our languages in an Accept-Language header, by its q weights (a header
    that does not parse counts as none)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        tag = tag.strip().lower()
        if weight > 0 and tag.split("-")[0] in LANGUAGES:
            ranked.append((-weight, i, tag))
    return min(ranked)[2] if ranked else None


def _html_lang(lang: str) -> str:
    return "zh-Hans" if lang == "zh" else "en"


def _countdown(seconds: int) -> str:
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def _scan_app(provider: PaymentProvider | None, lang: str) -> str | None:
    """The scanning app's name, or None when the order is not paid by QR code."""
    if not isinstance(provider, QrPaymentProvider):
        return None
    key = f"scan_app_{provider.scan_app}"
    return t(key, lang) if has(key) else provider.scan_app


def not_found(lang: str) -> web.Response:
    return web.Response(
        status=404,
        content_type="text/html",
        charset="utf-8",
        headers=_HEADERS,
        text=_NOT_FOUND.format(
            html_lang=_html_lang(lang),
            title=html.escape(t("page_unknown_title", lang)),
            message=html.escape(t("page_unknown", lang)),
        ),
    )


def render(
    o: OrderView,
    state: PayState,
    seconds_left: int,
    app: str,
    lang: str,
    nonce: str,
    final: bool,
) -> str:
    esc = html.escape
    rows = detail_rows(o, lang)
    details = "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows) + "</dl>"
    qr = ""
    if state == "pending":
        qr = (
            f'<img class="qr" src="/pay/{esc(o.order_no)}/qr.png" width="280" height="280" '
            f'alt="{esc(t("pay_page_scan", lang, app=app))}">'
        )
    refresh = ""
    if not final:  # no script: reload now and then (a script needs no reload), as it polls
        refresh = f'\n<noscript><meta http-equiv="refresh" content="{NO_JS_REFRESH_SECONDS}">'
        refresh += "</noscript>"
    titles = {
        "pending": t("pay_page_title", lang, app=app),
        "paid": t("pay_page_paid_title", lang),
        "expired": t("pay_page_expired_title", lang),
        "closed": t("pay_page_closed_title", lang),
    }
    return _PAGE.format(
        html_lang=_html_lang(lang),
        refresh=refresh,
        title=esc(titles[state]),
        state=state,
        status_url=esc(f"/pay/{o.order_no}/status"),
        seconds_left=seconds_left,
        final="true" if final else "false",
        waiting=esc(t("pay_page_state_waiting", lang)),
        pay_title=esc(titles["pending"]),
        qr=qr,
        amount=esc(str(o.price)),
        scan=esc(t("pay_page_scan", lang, app=app)),
        time_left_label=esc(t("pay_page_time_left", lang)),
        countdown=_countdown(seconds_left),
        hint=esc(t("pay_page_phone_hint", lang, app=app)),
        paid_badge=esc(t("page_state_paid", lang)),
        paid_title=esc(titles["paid"]),
        paid_text=esc(t("pay_page_topup_paid" if o.kind == "topup" else "pay_page_paid", lang)),
        expired_badge=esc(t("pay_page_state_expired", lang)),
        expired_title=esc(titles["expired"]),
        expired_text=esc(t("pay_page_expired", lang)),
        closed_badge=esc(t("pay_page_state_closed", lang)),
        closed_title=esc(titles["closed"]),
        closed_text=esc(t("pay_page_closed", lang)),
        details=details,
        nonce=nonce,
        poll_ms=POLL_SECONDS * 1000,
    )


async def _load(
    db: Database, providers: Mapping[str, PaymentProvider], order_no: str
) -> PayView | None:
    """The order, or None: no such order, or one not paid by QR code (no pay page)."""
    async with db.session() as s:
        view = await pay_view(s, order_no)
    if view is None or not isinstance(providers.get(view.provider), QrPaymentProvider):
        return None
    return view


async def pay_page(
    db: Database,
    providers: Mapping[str, PaymentProvider],
    clock: Clock,
    request: web.Request,
    order_no: str,
) -> web.Response:
    view = await _load(db, providers, order_no)
    async with db.session() as s:
        details = None if view is None else await order_view(s, order_no)
    if view is None or details is None:
        return not_found(_lang(request, None))
    lang = _lang(request, details.language)
    app = _scan_app(providers.get(view.provider), lang) or view.provider
    now = clock.now()
    nonce = secrets.token_urlsafe(16)
    state = view.state(now)
    page = render(details, state, view.seconds_left(now), app, lang, nonce, view.final(now))
    return web.Response(
        content_type="text/html",
        charset="utf-8",
        text=page,
        headers={
            **_HEADERS,
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
                "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'"
            ),
        },
    )


async def pay_status(
    db: Database,
    providers: Mapping[str, PaymentProvider],
    clock: Clock,
    order_no: str,
) -> web.Response:
    view = await _load(db, providers, order_no)
    if view is None:
        return web.json_response({"error": "no such order"}, status=404, headers=_HEADERS)
    now = clock.now()
    state = view.state(now)
    body = {
        "state": state,
        "seconds_left": view.seconds_left(now) if state == "pending" else 0,
        "final": view.final(now),  # the page stops asking once nothing can change
    }
    return web.Response(text=json.dumps(body), content_type="application/json", headers=_HEADERS)


async def pay_qr(
    db: Database,
    providers: Mapping[str, PaymentProvider],
    clock: Clock,
    order_no: str,
) -> web.Response:
    view = await _load(db, providers, order_no)
    if view is None:
        return web.Response(status=404, text="no such order", headers=_HEADERS)
    if view.state(clock.now()) != "pending" or not view.payload:
        # A paid or timed-out order's code must not be scanned again.
        return web.Response(status=410, text="this QR code can no longer be paid", headers=_HEADERS)
    try:
        png = qr_png(view.payload)
    except ValueError:
        return web.Response(status=404, text="no QR code for this order", headers=_HEADERS)
    return web.Response(body=png, content_type="image/png", headers=_HEADERS)
