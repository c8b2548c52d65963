from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from gatepass.service import Service
from sandbox.checkout_page import add_routes as sandbox_checkout_routes
from sandbox.stripe_host import FakeStripe
from sandbox.telegram.client import EmulatorClient
from sandbox.telegram.server import TelegramEmulator
from storage.clock import MovableClock
from storage.db import Database
from tests.conftest import free_port
from tests.e2e.world import (
    STRIPE_KEY,
    STRIPE_WHSEC,
    OutsideHost,
    World,
    populate,
    settings_for,
)

# Service.stop bounds each of its own steps (about 85 s in all at worst).
STOP_STEP_TIMEOUT = 120.0


async def start_world(
    db_url: tuple[str, str | None], *, hosts: Sequence[OutsideHost] = (), **telegram: object
) -> tuple[World, TelegramEmulator]:
    emulator = TelegramEmulator()
    tg_url = await emulator.start()
    port = free_port()
    clock = MovableClock()  # shared with the Stripe host, so periods move with our time
    stripe = FakeStripe(
        secret_key=STRIPE_KEY,
        webhook_secret=STRIPE_WHSEC,
        webhook_url=f"http://127.0.0.1:{port}/webhooks/stripe",
        clock=clock,
    )
    stripe_url = await stripe.start()
    public_url = f"http://127.0.0.1:{port}"
    sections = {h.section: await h.start_for(public_url) for h in hosts}
    settings = settings_for(db_url[0], port, tg_url, stripe_url, sections, **telegram)
    db = Database(*db_url)
    service = Service(settings, clock, db=db, web_mounts=[sandbox_checkout_routes])
    tg = EmulatorClient(tg_url)
    world = World(service, tg, stripe, db, clock, public_url, {h.section: h for h in hosts})
    try:
        await populate(tg)
        await service.start()
    except BaseException:
        await stop_world(world, emulator)
        raise
    return world, emulator


async def stop_world(world: World, emulator: TelegramEmulator) -> None:
    """Stop everything; a step that hangs fails the case naming the step."""
    steps = [
        ("service.stop", world.service.stop),
        ("emulator client close", world.tg.close),
        ("stripe host stop", world.stripe.stop),
        *((f"{name} host stop", host.stop) for name, host in world.hosts.items()),
        ("emulator stop", emulator.stop),
    ]
    hung = []
    for name, step in steps:  # every step runs, so a hang in one frees the rest
        try:
            await asyncio.wait_for(step(), timeout=STOP_STEP_TIMEOUT)
        except TimeoutError:
            hung.append(name)
    if hung:
        for task in asyncio.all_tasks():  # what is still running, for the log
            task.print_stack(limit=8)
        pytest.fail(f"{', '.join(hung)} did not finish within {STOP_STEP_TIMEOUT:.0f} s")


@pytest.fixture
async def world(db_url: tuple[str, str | None]) -> AsyncIterator[World]:
    w, emulator = await start_world(db_url)
    try:
        yield w
    finally:
        await stop_world(w, emulator)
