"""The web app's webhook surface over real HTTP (aiohttp's test server), on a Service that is
built but not started: no Telegram, no scheduler, just POST /webhooks/{provider}."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict
from sqlalchemy import func, select
from sqlmodel import col

from gatepass.config import Settings
from gatepass.service import Service
from gatepass.web import build_web_app
from storage.db import Database
from storage.models import AuditLog, Membership, Order, Outbox, Payment, WebhookEvent
from tests.factories import SANDBOX_SECRET, MovableClock
from tests.stripe_fixtures import SECRET_KEY, WEBHOOK_SECRET


class WebhookClient:
    def __init__(self, client: TestClient, db: Database) -> None:
        self.client, self.db = client, db

    async def post(
        self, provider: str, body: bytes, headers: Mapping[str, str] | list[tuple[str, str]]
    ) -> tuple[int, str]:
        hdrs = CIMultiDict(list(headers.items()) if isinstance(headers, Mapping) else headers)
        resp = await self.client.post(f"/webhooks/{provider}", data=body, headers=hdrs)
        return resp.status, await resp.text()

    async def counts(self) -> dict[str, int]:
        """Rows of every table a webhook may write."""
        out = {}
        async with self.db.session() as s:
            for model in (WebhookEvent, Payment, Membership, Outbox, AuditLog):
                out[model.__tablename__] = (
                    await s.execute(select(func.count()).select_from(model))
                ).scalar_one()
            out["paid_orders"] = (
                await s.execute(
                    select(func.count()).select_from(Order).where(col(Order.status) != "pending")
                )
            ).scalar_one()
        return out


@asynccontextmanager
async def webhook_client(
    db: Database, now: Any, stripe_api: str = "http://127.0.0.1:9"
) -> AsyncIterator[WebhookClient]:
    settings = Settings.model_validate(
        {
            "database": {"url": db.url},
            "telegram": {"token": "1:unit"},
            "stripe": {
                "secret_key": SECRET_KEY,
                "webhook_secret": WEBHOOK_SECRET,
                "api_base": stripe_api,
            },
            "sandbox_pay": {"webhook_secret": SANDBOX_SECRET},
        }
    )
    service = Service(settings, MovableClock(now), db=db)
    try:
        async with TestClient(TestServer(build_web_app(service))) as client:
            yield WebhookClient(client, db)
    finally:
        for p in service.providers.values():
            await p.close()
