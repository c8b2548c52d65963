"""Webhook delivery: POST each update in order, retry until a 2xx, run a method in the reply."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from .params import Params, Upload, read_multipart
from .state import BotAccount, Clock

log = logging.getLogger(__name__)

ReplyRunner = Callable[[BotAccount, Params], Awaitable[None]]


class WebhookDeliverer:
    """One task per bot with a webhook. Telegram delivers in order and retries a failing update
    with growing pauses, so a handler that answers 500 sees the same update again."""

    def __init__(
        self,
        bot: BotAccount,
        session: aiohttp.ClientSession,
        clock: Clock,
        run_reply: ReplyRunner,
        *,
        retry_delay: float = 0.2,
        max_delay: float = 5.0,
    ) -> None:
        self.bot = bot
        self.session = session
        self.clock = clock
        self.run_reply = run_reply
        self.retry_delay = retry_delay
        self.max_delay = max_delay
        self.delivered = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"webhook-{self.bot.id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        queue = self.bot.updates
        delay = self.retry_delay
        while not queue.closed:
            if not queue.pending:
                await queue.changed(1.0)
                continue
            update = queue.pending[0]
            error = await self._post(update)
            if error is None:
                queue.delivered(update)
                self.delivered += 1
                delay = self.retry_delay
                continue
            self.bot.webhook_last_error_date = int(self.clock.now())
            self.bot.webhook_last_error_message = error
            log.info("webhook delivery to %s failed: %s", self.bot.webhook_url, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)

    async def _post(self, update: dict[str, Any]) -> str | None:
        headers = {}
        if self.bot.webhook_secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.bot.webhook_secret
        try:
            async with self.session.post(
                self.bot.webhook_url,
                json=update,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                if not 200 <= response.status < 300:
                    return f"Wrong response from the webhook: {response.status} {response.reason}"
                if self.bot.updates.lose_answers > 0:
                    # The bot handled it, but its answer never reached Telegram (a proxy
                    # timeout, a connection reset): Telegram sends the same update again.
                    self.bot.updates.lose_answers -= 1
                    self.bot.updates.redelivered += 1
                    return "Read timeout expired"
                params = await _reply_params(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"Connection failed: {exc.__class__.__name__}"
        if params is not None:
            try:
                await self.run_reply(self.bot, params)
            except Exception:  # Telegram ignores a failing method in a webhook reply
                log.exception("webhook reply method failed")
        return None


async def _reply_params(response: aiohttp.ClientResponse) -> Params | None:
    """A webhook may answer with a Bot API call ({"method": ...}), which Telegram executes."""
    ctype = response.content_type
    if ctype.startswith("multipart/"):
        values: dict[str, Any] = {}
        uploads: dict[str, Upload] = {}
        await read_multipart(aiohttp.MultipartReader.from_response(response), values, uploads)
    elif ctype == "application/json":
        try:
            values = json.loads(await response.read() or b"{}")
        except ValueError:
            return None
        uploads = {}
    else:
        return None
    if not isinstance(values, dict) or not values.get("method"):
        return None
    return Params(values, uploads)
