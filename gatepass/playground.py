"""`gatepass playground`: the product, locally, in a browser.

The demo's wiring (gatepass.demo.local_stack: the service on a temporary SQLite database,
the Telegram Bot API emulator, the sandbox payment provider) with the demo's cast seeded
(Olga owns "Traders Club", Bob buys, Sam is a stranger), kept running until Ctrl-C. The
URL printed first is the emulator's playground page (sandbox/telegram/playground.py), a small
chat client in which you act as any user. A plan priced in CNY is paid with WeChat Pay or
Alipay by QR code: the local hosts' "sandbox phone" pages (also printed) list the orders that
can be paid, and their Pay button does what scanning and paying would. The page's clock
control moves the service's clock too and runs the sweeps at once, so reminders and removals
show up without waiting days.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from gatepass.demo import OWNER, LocalStack, local_stack, seed

DEFAULT_PORT = 8089


@dataclass
class Playground:
    stack: LocalStack

    @property
    def url(self) -> str:
        """The page, opened as the owner (the page remembers who you are in the #fragment)."""
        return f"{self.stack.tg_url}/playground#u={OWNER}"

    @property
    def phones(self) -> dict[str, str]:
        """Where to "scan and pay" a WeChat Pay / Alipay QR order."""
        return {"WeChat Pay": self.stack.wechatpay.phone_url, "Alipay": self.stack.alipay.phone_url}


def clock_mover(stack: LocalStack) -> Any:
    """The page's clock control, service side: move the service's clock and run every sweep
    once at the new time (the scheduler would only notice at its next tick)."""

    async def advance(seconds: float) -> dict[str, Any]:
        stack.clock.advance(timedelta(seconds=seconds))
        did = await stack.service.sweeps.run_sweeps_once(stack.clock.now())
        return {"reminded": did["reminded"], "removed": did["removed"]}

    return advance


@contextlib.asynccontextmanager
async def playground(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Playground]:
    """Everything running, seeded and wired to the page; stopped on the way out."""
    async with local_stack(emulator_host=host, emulator_port=port) as stack:
        await seed(stack.tg)
        stack.emulator.playground.advance = clock_mover(stack)
        pg = Playground(stack)
        stack.emulator.playground.links = [
            (f"{name} sandbox phone", url) for name, url in pg.phones.items()
        ]
        yield pg


async def serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            loop.add_signal_handler(sig, stop.set)
    async with playground(host, port) as pg:
        print(f"gatepass playground: open {pg.url}  (Ctrl-C stops it)", flush=True)
        for name, url in pg.phones.items():
            print(f"  pay {name} QR orders (sandbox phone): {url}", flush=True)
        await stop.wait()


def run_playground(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> int:
    """Exit 0 after Ctrl-C; 2 with one line if the page's port cannot be had."""
    # The page is the transcript; only warnings from the service reach the terminal.
    logging.getLogger().setLevel(logging.WARNING)
    try:
        asyncio.run(serve(host, port))
    except OSError as e:
        print(
            f"gatepass: playground cannot listen on {host}:{port}: {e.strerror or e} "
            "(pick another with --port)",
            file=sys.stderr,
        )
        return 2
    return 0
