"""The WeChat worker's wiring: `gatepass wechat --config FILE`, and the tests' rig.

`build_worker` puts together, from the settings, what bot/wechat/worker.py runs: the
gateway with the [wechat] rate budgets, an outbox worker that claims only `wechat` rows
(`gatepass run` leaves them alone), and the conversation handler. `run_wechat` is the
process: the database, the clock, the payment providers (checkouts start from WeChat too),
the worker until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing.provider import PaymentProvider
from bot.gateway import RateLimiter
from bot.wechat.conversation import WechatEnv, on_message
from bot.wechat.dispatch import MessageHandler
from bot.wechat.events import Incoming, Outgoing
from bot.wechat.gateway import WechatGateway
from bot.wechat.worker import HandlerFactory, WechatWorker
from gatepass.config import ConfigError, Settings, WechatConfig
from gatepass.providers import build_providers
from scheduler.outbox import OutboxWorker
from storage.clock import Clock, SystemClock
from storage.db import Database

log = logging.getLogger(__name__)

# WeChat rooms use no invite links: the outbox worker's invite TTL is never read for them.
NO_INVITES = timedelta(hours=24)
MISSING = "wechat.endpoint: is required (the [wechat] section is missing)"


def conversation_handler(
    settings: Settings, db: Database, providers: Mapping[str, PaymentProvider], clock: Clock
) -> HandlerFactory:
    """bot.wechat.conversation.on_message with its WechatEnv, for the logged-in bot."""

    def for_bot(bot_id: str) -> MessageHandler:
        env = WechatEnv(
            public_url=settings.web.public_url,
            order_timeout=timedelta(minutes=settings.scheduler.order_timeout_minutes),
            providers=providers,
            clock=clock,
            bot_id=bot_id,
            db=db,
            admin_ids=list(settings.telegram.admin_ids) if settings.telegram else [],
            wallet_on=settings.wallet.enabled,
        )

        async def handle(session: AsyncSession, msg: Incoming) -> list[Outgoing]:
            return await on_message(session, env, msg)

        return handle

    return for_bot


def limiter_for(config: WechatConfig) -> RateLimiter:
    """The [wechat] budgets (why they are slow: gatepass/config.WechatConfig)."""
    return RateLimiter(
        config.send_per_minute / 60.0, config.per_chat_per_minute, config.per_room_per_minute
    )


def build_worker(
    settings: Settings,
    db: Database,
    clock: Clock,
    providers: Mapping[str, PaymentProvider],
    *,
    handler_for: HandlerFactory | None = None,
    first_backoff: float | None = None,
) -> WechatWorker:
    """The WeChat worker on these settings; `handler_for` replaces the conversation (tests)."""
    config = settings.wechat
    if config is None:
        raise ConfigError(MISSING)
    gateway = WechatGateway(limiter_for(config))
    outbox = OutboxWorker(
        db,
        {"wechat": gateway},
        clock,
        invite_ttl=NO_INVITES,
        concurrency=settings.scheduler.outbox_concurrency,
        providers=providers,
        only_platform="wechat",
    )
    extra: dict[str, Any] = {} if first_backoff is None else {"first_backoff": first_backoff}
    return WechatWorker(
        config.endpoint,
        config.token.get_secret_value(),
        db,
        clock,
        gateway=gateway,
        outbox=outbox,
        handler_for=handler_for or conversation_handler(settings, db, providers, clock),
        outbox_interval=settings.scheduler.outbox_interval_seconds,
        **extra,
    )


async def run_wechat(settings: Settings) -> None:
    """The `gatepass wechat` process: the worker until SIGTERM or SIGINT."""
    db = Database(settings.database.url)
    await db.ping()  # a database that is not there fails now, in one line, not at a message
    providers = build_providers(settings)
    try:
        worker = build_worker(settings, db, SystemClock(), providers)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        log.info("gatepass wechat: connecting to the puppet service at %s", worker.endpoint)
        await worker.run()
    finally:
        for p in providers.values():
            await p.close()
        await db.dispose()
