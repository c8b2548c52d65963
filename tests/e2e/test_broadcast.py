"""/broadcast end to end: the real service over the Bot API emulator. Every member with
active access gets the owner's text once, as plain text; an expired member and a member
who blocked the bot get nothing; a 429 is waited out; the owner gets one report. Refusals
say why. And a service stopped half-way through a broadcast sends the rest after its
restart, nobody twice, with one report."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from gatepass.service import Service
from sandbox.checkout_page import add_routes as sandbox_checkout_routes
from sandbox.telegram.client import SentMessage
from sandbox.telegram.server import TelegramEmulator
from storage.db import Database
from storage.models import Broadcast, BroadcastRecipient, Outbox
from tests.e2e.conftest import start_world, stop_world
from tests.e2e.world import GROUP, OWNER, STRANGER, World

ACTIVE = [5001, 5002, 5003, 5004]
EXPIRED, BLOCKED = 5005, 5006
# What an owner may well type: markup characters that must reach members as typed.
TEXT = "Live session at 18:00 UTC <b>today</b> *bring questions* _see you_ & 1 < 2"


def _text(needle: str):
    return lambda m: needle in (m.text or "")


async def _settled(world: World) -> None:
    async def nothing_pending() -> bool:
        return await world.tg.pending_updates() == 0

    await world.eventually(nothing_pending)


async def _member(world: World, user: int, group_no: int, duration: str = "30d") -> None:
    """A user who started the bot and was given access by the owner (/grant)."""
    await world.tg.create_user(user, f"Member {user}", language_code="en")
    await world.tg.send_text(user, "/help")
    await world.ask(OWNER, f"/grant {user} {group_no} {duration}", match=_text("has access"))


async def _broadcasts_to(world: World, user: int, text: str = TEXT) -> list[SentMessage]:
    return [m for m in await world.tg.sent_messages(user) if m.text == text]


async def _reports(world: World) -> list[SentMessage]:
    return [
        m for m in await world.tg.sent_messages(OWNER) if "is done: delivered" in (m.text or "")
    ]


async def test_broadcast_reaches_each_active_member_once_and_reports_once(world: World):
    group_no = await world.set_up_shop()
    refused = await world.ask(OWNER, f"/broadcast {group_no} {TEXT}", match=_text("nothing sent"))
    assert "no members with active access" in (refused.text or "")
    assert await world.count(Broadcast) == 0 and await world.count(Outbox, Outbox.kind == "x") == 0

    await _member(world, EXPIRED, group_no, "1d")
    world.clock.advance(timedelta(days=2))  # EXPIRED's access ended
    await world.service.sweeps.run_sweeps_once(world.clock.now())
    for user in [*ACTIVE, BLOCKED]:
        await _member(world, user, group_no)
    await world.tg.block_bot(BLOCKED)
    # Telegram answers one member's message with 429: waited out, then delivered.
    await world.tg.inject_fault("sendMessage", error_code=429, retry_after=1, chat_id=ACTIVE[0])

    queued = await world.ask(OWNER, f"/broadcast {group_no} {TEXT}", match=_text("queued"))
    assert f"queued for {len(ACTIVE) + 1} members" in (queued.text or "")
    # The same update delivered again (a replica died before confirming it) queues nothing.
    await _settled(world)
    await world.tg.redeliver_update()

    report = await world.tg.wait_for_message(OWNER, _text("is done: delivered"), timeout=20)
    assert "delivered 4, blocked the bot 1, failed 0 (of 5)" in (report.text or "")
    for user in ACTIVE:
        (got,) = await _broadcasts_to(world, user)
        # Plain text: no parse_mode, so the owner's < and * arrive as typed.
        assert got.raw["parse_mode"] is None and not got.raw.get("entities")
    assert await _broadcasts_to(world, EXPIRED) == []
    assert await _broadcasts_to(world, BLOCKED) == []
    throttled = [
        c
        for c in await world.tg.calls("sendMessage")
        if c["params"].get("chat_id") == str(ACTIVE[0]) and c["error_code"] == 429
    ]
    assert len(throttled) == 1
    await _settled(world)
    assert world.service.telegram is not None
    assert world.service.telegram.sessions.duplicates >= 1  # the redelivered /broadcast
    assert await world.count(Broadcast) == 1
    assert len([m for m in await world.tg.sent_messages(OWNER) if "queued" in (m.text or "")]) == 1
    (b,) = await world.rows(Broadcast)
    assert (b.recipients, b.delivered, b.blocked, b.failed) == (5, 4, 1, 0)
    assert b.finished_at is not None
    assert len(await _reports(world)) == 1


async def test_broadcast_refusals_say_why(world: World):
    group_no = await world.set_up_shop()
    await _member(world, ACTIVE[0], group_no)
    usage = "Usage: /broadcast"
    for text, reason in [
        ("/broadcast", "Some arguments are missing."),
        (f"/broadcast {group_no}", "Some arguments are missing."),
        ("/broadcast hello everyone", "'hello' is not a group number"),
        ("/broadcast 99 hello", "There is no group 99"),
        (f"/broadcast {group_no} " + "x" * 4097, "The message is 4097 characters long"),
    ]:
        reply = await world.ask(OWNER, text, match=_text(usage))
        assert (reply.text or "").startswith(reason), (text, reply.text)
    await world.tg.send_text(STRANGER, "/help")
    reply = await world.ask(STRANGER, f"/broadcast {group_no} hello", match=_text(usage))
    assert f"Group {group_no} is not yours to manage." in (reply.text or "")
    reply = await world.ask(OWNER, f"/broadcast {group_no} hi", chat=GROUP, match=_text("private"))
    assert reply
    await _settled(world)
    assert await world.count(Broadcast) == 0
    assert await world.count(BroadcastRecipient) == 0
    assert await _broadcasts_to(world, ACTIVE[0], "hello") == []


# -- a restart half-way --------------------------------------------------------------------------

MANY = [6001 + i for i in range(8)]


@pytest.fixture
async def slow(db_url: tuple[str, str | None]) -> AsyncIterator[tuple[World, TelegramEmulator]]:
    """A world whose rate budget is small (4 calls/s, so a broadcast paces 2 messages a
    second): a broadcast to eight members takes seconds, time to stop the service."""
    w, emulator = await start_world(db_url, rate_global_per_second=4)
    try:
        yield w, emulator
    finally:
        await stop_world(w, emulator)


async def test_a_restart_half_way_sends_the_rest_nobody_twice_one_report(
    slow: tuple[World, TelegramEmulator], db_url: tuple[str, str | None]
):
    world, _emulator = slow
    group_no = await world.set_up_shop()
    for user in MANY:
        await _member(world, user, group_no)
    await world.ask(OWNER, f"/broadcast {group_no} {TEXT}", match=_text("queued for 8 members"))

    async def some_sent() -> int:
        return sum([len(await _broadcasts_to(world, u)) for u in MANY])

    async def part_way() -> bool:
        return await some_sent() >= 2

    await world.eventually(part_way, timeout=15)
    await world.service.stop()  # SIGTERM half-way
    sent_before = await some_sent()
    assert sent_before < len(MANY), "the broadcast finished before the stop: nothing tested"
    assert await _reports(world) == []

    # A new instance on the same database and Bot API.
    world.db = Database(*db_url)
    world.service = Service(
        world.service.settings, world.clock, db=world.db, web_mounts=[sandbox_checkout_routes]
    )
    await world.service.start()
    await world.tg.wait_for_message(OWNER, _text("is done: delivered"), timeout=30)
    for user in MANY:
        assert len(await _broadcasts_to(world, user)) == 1, user
    (report,) = await _reports(world)
    assert "delivered 8, blocked the bot 0, failed 0 (of 8)" in (report.text or "")
    (b,) = await world.rows(Broadcast)
    assert (b.delivered, b.finished_at is not None) == (8, True)
