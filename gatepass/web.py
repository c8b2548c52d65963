"""The HTTP surface: provider webhooks, Telegram webhook mode, health and metrics, and the
buyer's pages (return pages, the QR pay page)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from aiohttp import web

from billing.ingest import ingest_webhook

if TYPE_CHECKING:
    from gatepass.service import Service

log = logging.getLogger(__name__)
SERVICE: web.AppKey[Service] = web.AppKey("service", "Service")  # type: ignore[arg-type]

# Routes mounted by whoever wires the service (the demo and the tests mount the sandbox
# checkout page this way): this module never imports the sandbox.
RouteMount = Callable[[web.Application, "Service"], None]


def build_web_app(service: Service, mounts: Iterable[RouteMount] = ()) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[SERVICE] = service
    app.router.add_post("/webhooks/{provider}", provider_webhook)
    app.router.add_post("/telegram/webhook", telegram_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/paid/{order_no}", after_checkout)
    app.router.add_get("/cancelled/{order_no}", after_checkout)
    app.router.add_get("/pay/{order_no}", pay_page)
    app.router.add_get("/pay/{order_no}/qr.png", pay_qr)
    app.router.add_get("/pay/{order_no}/status", pay_status)
    for mount in mounts:
        mount(app, service)
    return app


async def provider_webhook(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    name = request.match_info["provider"]
    provider = service.providers.get(name)
    if provider is None:
        return web.Response(status=404, text=f"no provider '{name}' is configured")
    body = await request.read()  # raw bytes: the signature covers them exactly
    service.webhooks_in_flight += 1
    try:
        ack, outcome = await ingest_webhook(
            service.db,
            provider,
            request.headers,
            body,
            service.clock.now(),
            on_commit=service.wake_outbox,
        )
    finally:
        service.webhooks_in_flight -= 1
    service.metrics.webhooks.labels(name, outcome).inc()
    return web.Response(status=ack.status, body=ack.body, content_type=ack.content_type)


async def telegram_webhook(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    tg = service.settings.telegram
    if tg is None or tg.mode != "webhook" or service.telegram is None:
        return web.Response(status=404, text="webhook mode is off")
    secret = tg.webhook_secret.get_secret_value() if tg.webhook_secret else ""
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not secret or not hmac.compare_digest(given, secret):
        return web.Response(status=401, text="bad secret token")
    try:
        payload = await request.json()
    except ValueError:
        return web.Response(status=400, text="body is not JSON")
    # Handle first, answer after: an update that carries money must not be acknowledged
    # before it is stored (aiogram's SimpleRequestHandler answers first by default). Once its
    # transaction committed the answer is 200, whatever became of the replies (sent, or
    # left to the outbox); an update applied before is a no-op, answered 200 too. Only an
    # update whose transaction did not commit gets 500, so Telegram sends it again.
    try:
        await service.telegram.feed_raw_update(payload)
    except Exception:  # nothing was committed: ask Telegram to retry
        log.exception("telegram update %s not applied", payload.get("update_id"))
        return web.Response(status=500, text="update not applied; send it again")
    return web.Response(status=200)


async def healthz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    try:
        await service.db.ping()
    except Exception as e:  # noqa: BLE001
        return web.json_response({"status": "error", "database": str(e)[:200]}, status=503)
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if service.outbox is not None:
        service.metrics.outbox_delivered.set(service.outbox.delivered)
        service.metrics.outbox_failed.set(service.outbox.failed)
    return web.Response(body=service.metrics.render(), content_type="text/plain", charset="utf-8")


async def after_checkout(request: web.Request) -> web.Response:
    """Where the provider sends the buyer back (gatepass/return_pages.py); the invite itself
    arrives in the chat."""
    from gatepass.return_pages import return_page

    return await return_page(
        request.app[SERVICE].db,
        request.match_info["order_no"],
        returned_paid=request.path.startswith("/paid/"),
    )


async def pay_page(request: web.Request) -> web.Response:
    """The QR pay page of a WeChat Pay / Alipay order (gatepass/pay_page.py); read only."""
    from gatepass import pay_page as page

    service = request.app[SERVICE]
    return await page.pay_page(
        service.db, service.providers, service.clock, request, request.match_info["order_no"]
    )


async def pay_status(request: web.Request) -> web.Response:
    """What the pay page polls: {"state": pending|paid|expired|closed, "seconds_left": n,
    "final": bool}."""
    from gatepass import pay_page as page

    service = request.app[SERVICE]
    return await page.pay_status(
        service.db, service.providers, service.clock, request.match_info["order_no"]
    )


async def pay_qr(request: web.Request) -> web.Response:
    """The order's QR code as PNG, only while it can be paid."""
    from gatepass import pay_page as page

    service = request.app[SERVICE]
    return await page.pay_qr(
        service.db, service.providers, service.clock, request.match_info["order_no"]
    )
