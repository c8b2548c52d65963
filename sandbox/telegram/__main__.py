"""`python -m sandbox.telegram --port 8081`: run the emulator standalone until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from .server import TelegramEmulator


async def _serve(host: str, port: int, bot_username: str) -> None:
    emulator = TelegramEmulator(bot_username=bot_username)
    base_url = await emulator.start(host, port)
    print(
        f"Telegram Bot API emulator on {base_url}  (control API: {base_url}/control/..., "
        f"playground page: {base_url}/playground)",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.telegram", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--bot-username", default="gatepass_bot")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.bot_username))


if __name__ == "__main__":
    main()
