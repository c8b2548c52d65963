"""Database work never runs on the event loop: another process holding SQLite's write lock
(`gatepass members import`, a backup) makes the webhooks that need it wait, and nothing else.
/healthz, /metrics and Telegram keep answering, and the waiting webhook is answered once the
lock is released, with its event stored."""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import pytest

from sandbox.stripe_host import build_event, checkout_session_object, event_body, sign_payload
from storage.models import WebhookEvent
from tests.e2e.world import BUYER, STRIPE_WHSEC, World

HOLD_SECONDS = 3.0
DEADLINE = 0.5  # for each /healthz and /metrics answer while the lock is held

_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


async def _loop_lag(stop: asyncio.Event, worst: list[float]) -> None:
    """The largest delay of a 10 ms timer: how long the loop was kept from running."""
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.01)
        worst[0] = max(worst[0], time.perf_counter() - t0 - 0.01)


async def test_a_lock_held_by_another_process_blocks_nothing_else(world: World) -> None:
    if not world.db.is_sqlite:
        pytest.skip("SQLite's write lock; asyncpg never blocks the loop")
    path = world.db.url.split("///", 1)[1]
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, path, str(HOLD_SECONDS), stdout=asyncio.subprocess.PIPE
    )
    assert holder.stdout is not None
    assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"locked\n"
    locked_at = time.monotonic()

    stop, worst = asyncio.Event(), [0.0]
    lag = asyncio.create_task(_loop_lag(stop, worst))
    body = event_body(
        build_event(
            "checkout.session.completed",
            checkout_session_object(
                id="cs_locked",
                client_reference_id="GPNOSUCHORDER",
                metadata={"order_no": "GPNOSUCH"},
                amount_total=499,
                currency="usd",
                payment_status="paid",
            ),
        )
    )
    async with aiohttp.ClientSession() as http:
        # A webhook that needs the lock: it waits (off the loop) until the holder lets go.
        webhook = asyncio.create_task(
            http.post(
                f"{world.public_url}/webhooks/stripe",
                data=body,
                headers={
                    "Stripe-Signature": sign_payload(body, STRIPE_WHSEC),
                    "Content-Type": "application/json",
                },
            )
        )
        # Telegram: an update arrives by polling while the lock is held.
        await world.tg.send_text(BUYER, "/help")
        answered = 0
        while time.monotonic() - locked_at < HOLD_SECONDS - DEADLINE:
            for route in ("/healthz", "/metrics"):
                t0 = time.monotonic()
                async with asyncio.timeout(DEADLINE):
                    async with http.get(f"{world.public_url}{route}") as r:
                        assert r.status == 200, (route, await r.text())
                # (a frozen loop cannot even fire the timeout: measure the wall time too)
                took = time.monotonic() - t0
                assert took < DEADLINE, f"{route} took {took:.2f} s while the lock was held"
                answered += 1
            await asyncio.sleep(0.05)
        assert not webhook.done(), "the webhook did not wait for the lock"
        async with asyncio.timeout(HOLD_SECONDS + 10):
            response = await webhook
        assert response.status == 200, await response.text()
        assert time.monotonic() - locked_at >= HOLD_SECONDS - 0.2
    stop.set()
    await lag
    await holder.wait()
    assert answered >= 8
    assert worst[0] < 0.2, f"the event loop stalled {worst[0] * 1000:.0f} ms"
    async with world.db.session() as s:
        stored = await s.get(WebhookEvent, 1)
    assert stored is not None and stored.processed_at is not None
