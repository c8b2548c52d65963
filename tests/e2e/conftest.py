from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gatepass.clock import MovableClock
from gatepass.service import Service
from sandbox.stripe_host import FakeStripe
from sandbox.telegram.client import EmulatorClient
from sandbox.telegram.server import TelegramEmulator
from storage.db import Database
from tests.conftest import free_port
from tests.e2e.world import (
    STRIPE_KEY,
    STRIPE_WHSEC,
    World,
    populate,
    settings_for,
)


async def start_world(db_url: tuple[str, str | None], **telegram: object
                      ) -> tuple[World, TelegramEmulator]:
    emulator = TelegramEmulator()
    tg_url = await emulator.start()
    port = free_port()
    clock = MovableClock()  # shared with the Stripe host, so periods move with our time
    stripe = FakeStripe(secret_key=STRIPE_KEY, webhook_secret=STRIPE_WHSEC,
                        webhook_url=f"http://127.0.0.1:{port}/webhooks/stripe", clock=clock)
    stripe_url = await stripe.start()
    settings = settings_for(db_url[0], port, tg_url, stripe_url, **telegram)
    db = Database(*db_url)
    service = Service(settings, clock, db=db)
    tg = EmulatorClient(tg_url)
    world = World(service, tg, stripe, db, clock, f"http://127.0.0.1:{port}")
    try:
        await populate(tg)
        await service.start()
    except BaseException:
        await stop_world(world, emulator)
        raise
    return world, emulator


async def stop_world(world: World, emulator: TelegramEmulator) -> None:
    await world.service.stop()
    await world.tg.close()
    await world.stripe.stop()
    await emulator.stop()


@pytest.fixture
async def world(db_url: tuple[str, str | None]) -> AsyncIterator[World]:
    w, emulator = await start_world(db_url)
    try:
        yield w
    finally:
        await stop_world(w, emulator)
