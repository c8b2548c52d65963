"""The outside world for CLI tests: the Bot API emulator and the local Stripe host running
on a loop of their own in a background thread, so `gatepass.cli.main(...)` (which calls
asyncio.run itself) and `gatepass` subprocesses can talk to them over HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sandbox.stripe_host import FakeStripe
from sandbox.telegram.client import EmulatorClient
from sandbox.telegram.server import TelegramEmulator

T = TypeVar("T")

BOT_TOKEN = "7100:the-right-secret"
BOT_USERNAME = "gatepass_check_bot"
STRIPE_KEY = "sk_test_outside_123456789"


def closed_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Outside:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.emulator = TelegramEmulator(bot_username=BOT_USERNAME)
        self.stripe = FakeStripe(STRIPE_KEY, "whsec_outside")
        self.telegram_url = self.run(self.emulator.start())
        self.stripe_url = self.run(self.stripe.start())
        self.run(self._bot())

    async def _bot(self) -> None:
        tg = EmulatorClient(self.telegram_url)
        try:
            await tg.create_bot(BOT_TOKEN, username=BOT_USERNAME)
        finally:
            await tg.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.run(self.stripe.stop())
        self.run(self.emulator.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
