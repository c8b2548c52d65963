"""Issue 6 in polling mode: an update is confirmed to Telegram only after it was applied, so
a handler whose transaction failed, or a service stopped (or killed) mid-handler, does not
lose the update, and it is still applied exactly once. The real service, over the Bot API
emulator (whose getUpdates follows Telegram's offset rules)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiogram.types import Update
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

import bot.telegram
from gatepass.service import Service
from sandbox.checkout_page import add_routes as sandbox_checkout_routes
from sandbox.telegram.server import TelegramEmulator
from storage.db import Database
from storage.models import Plan, TelegramUpdate
from tests.e2e.conftest import start_world, stop_world
from tests.e2e.world import OWNER, World

_Worlds = tuple[World, TelegramEmulator, tuple[str, str | None]]


@pytest.fixture
async def polling(db_url: tuple[str, str | None]) -> AsyncIterator[_Worlds]:
    w, emulator = await start_world(db_url, mode="polling")
    try:
        yield w, emulator, db_url
    finally:
        await stop_world(w, emulator)


def _text(needle: str) -> Callable[[Any], bool]:
    return lambda m: needle in (m.text or "")


@contextmanager
def _database_down_for(db: Database, table: str, times: int) -> Iterator[list[int]]:
    """The next `times` INSERTs into `table` fail as if the database went away mid-transaction
    (the rest of that transaction, the update's claim included, is rolled back). Yields a
    one-item list: how many failures are left."""
    left = [times]

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if left[0] > 0 and statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()} "):
            left[0] -= 1
            raise OperationalError(
                statement, None, ConnectionError("server closed the connection (injected)")
            )

    event.listen(db.engine.sync_engine, "before_cursor_execute", before)
    try:
        yield left
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", before)


async def _setup_group(world: World) -> int:
    from tests.e2e.world import GROUP

    reply = await world.ask(OWNER, "/setup", chat=GROUP, match=_text("group #"))
    return int((reply.text or "").split("group #")[1].split()[0].strip("(),"))


async def _settled(world: World) -> None:
    async def nothing_pending() -> bool:
        return await world.tg.pending_updates() == 0

    await world.eventually(nothing_pending, timeout=15)


async def _plan_confirmations(world: World) -> int:
    return len([m for m in await world.tg.sent_messages(OWNER) if "Plan #" in (m.text or "")])


async def test_an_update_whose_transaction_failed_is_fetched_again_and_applied_once(
    polling: _Worlds,
):
    world = polling[0]
    group_no = await _setup_group(world)
    with _database_down_for(world.db, "plan_price", times=1) as left:
        await world.ask(
            OWNER, f"/addplan {group_no} 30d 4.99USD Monthly", match=_text("Plan #"), timeout=15
        )
        assert left == [0]  # the first try did fail
    await _settled(world)
    assert await world.count(Plan) == 1
    assert await _plan_confirmations(world) == 1


async def test_a_poison_update_is_given_up_and_the_updates_after_it_go_on(polling: _Worlds):
    world = polling[0]
    group_no = await _setup_group(world)
    poller = world.service.telegram._poller
    assert poller is not None
    with _database_down_for(world.db, "plan_price", times=1000) as left:
        await world.say(OWNER, f"/addplan {group_no} 30d 4.99USD Monthly")
        helped = await world.ask(OWNER, "/help", match=_text("/orders"), timeout=15)

        async def given_up() -> bool:
            return bool(poller.given_up)

        await world.eventually(given_up, timeout=20)
        assert 1000 - left[0] == poller.max_tries
    await _settled(world)
    assert await world.count(Plan) == 0
    # The update after the poison one was applied once, though it was fetched again.
    after = [
        m
        for m in await world.tg.sent_messages(OWNER, since=helped.message_id - 1)
        if "/orders" in (m.text or "")
    ]
    assert len(after) == 1
    # And the bot is not stuck: the next command is answered.
    await world.ask(OWNER, f"/addplan {group_no} 30d 4.99USD Monthly", match=_text("Plan #"))
    assert await world.count(Plan) == 1


async def test_an_update_cut_off_by_a_stop_is_applied_once_by_the_next_instance(
    polling: _Worlds, monkeypatch: pytest.MonkeyPatch
):
    world, _emulator, db_url = polling
    group_no = await _setup_group(world)
    frontend = world.service.telegram
    assert frontend is not None
    inside = asyncio.Event()

    async def stall_addplan(handler: Any, update: Update, data: dict[str, Any]) -> Any:
        # Runs inside the update's transaction, after its claim: a handler that never ends.
        if update.message is not None and (update.message.text or "").startswith("/addplan"):
            inside.set()
            await asyncio.Event().wait()
        return await handler(update, data)

    frontend.dp.update.outer_middleware(stall_addplan)
    await world.say(OWNER, f"/addplan {group_no} 30d 4.99USD Monthly")
    await asyncio.wait_for(inside.wait(), timeout=8)
    # The handler is cut off at stop (as by a crash): its transaction rolls back.
    monkeypatch.setattr(bot.telegram, "HANDLER_GRACE_SECONDS", 0.2)
    await world.service.stop()
    assert await world.tg.pending_updates() >= 1  # fetched, never confirmed

    # A new instance on the same database and Bot API.
    world.db = Database(*db_url)
    world.service = Service(
        world.service.settings, world.clock, db=world.db, web_mounts=[sandbox_checkout_routes]
    )
    await world.service.start()
    await world.tg.wait_for_message(OWNER, _text("Plan #"), timeout=15)
    await _settled(world)
    assert await world.count(Plan) == 1
    assert await _plan_confirmations(world) == 1
    assert await world.count(TelegramUpdate) >= 1
