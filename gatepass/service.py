"""The whole service in one process: web server, Telegram bot, outbox worker, scheduler."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import Awaitable, Sequence
from datetime import timedelta

from aiohttp import web

from billing.provider import PaymentProvider
from billing.reconcile import reconcile_pending
from billing.wallet_settle import use_wallet_rules
from bot.context import BotContext
from bot.gateway import RateLimiter
from bot.telegram import TelegramFrontend
from gatepass.config import ConfigError, Settings
from gatepass.metrics import Metrics
from gatepass.providers import build_providers, telegram_providers
from gatepass.startup import (
    check_sqlite_folder,
    database_problem,
    failing_as,
    listen_problem,
    telegram_problem,
)
from gatepass.web import RouteMount, build_web_app
from scheduler.jobs import Sweeps
from scheduler.outbox import OutboxWorker
from storage.clock import Clock, SystemClock
from storage.db import Database
from storage.migrate import upgrade

log = logging.getLogger(__name__)


class Service:
    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        db: Database | None = None,
        *,
        web_mounts: Sequence[RouteMount] = (),
    ) -> None:
        """`web_mounts` add routes to the web app (the demo and the tests mount the sandbox
        checkout page; `gatepass run` mounts nothing extra)."""
        if settings.telegram is None:
            raise ConfigError("telegram.token: is required (the [telegram] section is missing)")
        self.settings = settings
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        if db is None:
            check_sqlite_folder(settings.database.url)
            with failing_as(functools.partial(database_problem, settings.database.url)):
                db = Database(settings.database.url)
        self.db = db
        self.providers: dict[str, PaymentProvider] = build_providers(settings)
        # The paid path earns points by these (billing/wallet_rules.py); off: none earned.
        use_wallet_rules(settings.wallet.rules() if settings.wallet.enabled else None)
        self.web_mounts = tuple(web_mounts)
        self.telegram: TelegramFrontend | None = None
        self.outbox: OutboxWorker | None = None
        sc = settings.scheduler
        self.sweeps = Sweeps(
            self.db,
            self.clock,
            interval_seconds=sc.interval_seconds,
            reminder_days=sc.reminder_days,
            grace_hours=sc.grace_hours,
            batch=sc.batch_size,
            wake_outbox=self.wake_outbox,
            reconcile=functools.partial(
                reconcile_pending,
                self.db,
                self.providers,
                order_timeout=timedelta(minutes=sc.order_timeout_minutes),
                min_age=timedelta(minutes=sc.reconcile_after_minutes),
                limit=sc.reconcile_batch,
                on_commit=self.wake_outbox,
            ),
            keep_raw_bodies=timedelta(days=settings.webhooks.keep_raw_days),
        )
        # Money first: while payment webhooks are being stored, the outbox waits (a second
        # at most) before claiming more deliveries; see OutboxWorker.yield_to.
        self.webhooks_in_flight = 0
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def wake_outbox(self) -> None:
        if self.outbox is not None:
            self.outbox.wake()

    async def start(self, *, freeze_memory: bool = False) -> None:
        s = self.settings
        assert s.telegram is not None
        # What the outside refuses (database, Bot API, the port) raises StartupError: one
        # line naming the cause; `gatepass --debug` shows the original.
        with failing_as(functools.partial(database_problem, self.db.url)):
            await upgrade(self.db)
        self.telegram = TelegramFrontend(
            s.telegram.token.get_secret_value(),
            s.telegram.api_server,
            s.redis.url if s.redis else None,
        )
        with failing_as(functools.partial(telegram_problem, s.telegram.api_server)):
            gateway = await self.telegram.connect(self.clock)
        gateway.limiter = RateLimiter(
            s.telegram.rate_global_per_second,
            s.telegram.rate_per_chat_per_minute,
            s.telegram.rate_per_group_per_minute,
        )
        self.telegram.replies.limiter = gateway.limiter  # one budget for the whole process
        if s.telegram.stars:
            # Telegram Stars need no section of their own: they are paid through this bot.
            self.providers.update(telegram_providers(self.telegram.bot))
        self.outbox = OutboxWorker(
            self.db,
            {"telegram": gateway},
            self.clock,
            invite_ttl=timedelta(hours=s.telegram.invite_ttl_hours),
            concurrency=s.scheduler.outbox_concurrency,
            providers=self.providers,
            # WeChat rows are the WeChat worker's (`gatepass wechat`, its own process).
            skip_platform="wechat",
        )
        self.outbox.yield_to(lambda: self.webhooks_in_flight > 0)
        self.telegram.attach(
            BotContext(
                db=self.db,
                clock=self.clock,
                providers=self.providers,
                admin_ids=list(s.telegram.admin_ids),
                public_url=s.web.public_url,
                order_timeout=timedelta(minutes=s.scheduler.order_timeout_minutes),
                bot_username=self.telegram.username,
                wake_outbox=self.wake_outbox,
                # Half the global budget: the other half stays for invites, removals and
                # replies while a broadcast runs.
                broadcast_per_second=s.telegram.rate_global_per_second / 2,
                wallet_rules=s.wallet.rules() if s.wallet.enabled else None,
            )
        )
        # Stop waits at most this long for webhooks in progress (each one short transaction).
        self._runner = web.AppRunner(
            build_web_app(self, self.web_mounts), access_log=None, shutdown_timeout=15
        )
        await self._runner.setup()
        with failing_as(functools.partial(listen_problem, s.web.host, s.web.port)):
            await web.TCPSite(self._runner, s.web.host, s.web.port).start()
        self._tasks.append(
            asyncio.create_task(self.outbox.run_forever(s.scheduler.outbox_interval_seconds))
        )
        self.sweeps.start()
        with failing_as(functools.partial(telegram_problem, s.telegram.api_server)):
            if s.telegram.mode == "webhook":
                secret = s.telegram.webhook_secret
                assert secret is not None  # TelegramConfig requires it in webhook mode
                await self.telegram.start_webhook(
                    f"{s.web.public_url}/telegram/webhook", secret.get_secret_value()
                )
            else:
                await self.telegram.start_polling()
        if freeze_memory:
            # Everything loaded so far (modules, the ORM's mappings, aiogram's types) lives
            # as long as the process. Freezing it keeps the collector from walking it again
            # in every full collection: those walks stalled the event loop for 150-250 ms,
            # and every webhook in flight with it. (Off for services started and stopped
            # many times in one process, as tests do: frozen cycles are never collected.)
            gc.freeze()
        log.info(
            "gatepass is up on %s:%s as @%s (%s), providers: %s",
            s.web.host,
            s.web.port,
            self.telegram.username,
            s.telegram.mode,
            ", ".join(self.providers) or "none",
        )

    async def stop(self) -> None:
        """Stop taking webhooks in, then the workers, then Telegram (its handlers in progress
        finish first), then the database: whatever was accepted finishes its transaction
        before the pool goes away. The outbox stops before the bot's HTTP session closes, so
        no delivery fails for being cut off; an unfinished one is handed back.

        Each step has a deadline: a step that hangs is logged and the rest still run, so a
        stuck connection never keeps the process from exiting (nothing is lost by it: what
        was not committed is retried, by the provider or from the outbox)."""
        await _bounded("web server", self._runner.cleanup() if self._runner else None, 20)
        await _bounded("sweeps", self.sweeps.shutdown(), 10)
        for t in self._tasks:
            t.cancel()
        await _bounded("outbox", asyncio.gather(*self._tasks, return_exceptions=True), 10)
        self._tasks.clear()
        await _bounded("telegram", self.telegram.stop() if self.telegram else None, 30)
        for p in self.providers.values():
            await _bounded(f"provider {p.name}", p.close(), 5)
        await _bounded("database", self.db.dispose(), 10)

    async def run_forever(self) -> None:
        try:
            await self.start(freeze_memory=True)
        except BaseException:
            await self.stop()  # what did start (the database, the bot's session) is closed
            raise
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()


async def _bounded(step: str, aw: Awaitable[object] | None, seconds: float) -> None:
    """Await one shutdown step for at most `seconds`; a failure or a hang is logged."""
    if aw is None:
        return
    try:
        await asyncio.wait_for(aw, timeout=seconds)
    except TimeoutError:
        log.error("stop: %s did not finish within %ss; going on", step, seconds)
    except Exception:  # stopping must go on to the next step
        log.exception("stop: %s failed", step)
