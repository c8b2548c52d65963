"""The outbox worker with a recording gateway: leases survive a crash, 429 retry_after is
obeyed, 5xx backs off, refusals are kept, and one slow chat never holds up the others."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from membership.gateway import Button, RejectedError, RetryAfter, TransientError
from scheduler.outbox import OutboxWorker
from storage.db import Database
from storage.models import Outbox
from storage.outbox import claim_due, settle
from storage.queries import enqueue

LEASE = timedelta(seconds=120)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.t = now

    def now(self) -> datetime:
        return self.t


class RecordingGateway:
    """A ChatGateway that records what it is asked and fails as scripted: `script[user_id]`
    is a list of exceptions raised by successive sends to that user (then success)."""

    platform = "telegram"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.script: dict[str, list[Exception]] = {}
        self.hold: dict[str, asyncio.Event] = {}

    async def send(
        self,
        user_id: str,
        key: str,
        params: dict[str, Any],
        language: str | None,
        buttons: list[Button] | None = None,
    ) -> None:
        if user_id in self.hold:
            await self.hold[user_id].wait()
        failures = self.script.get(user_id)
        if failures:
            raise failures.pop(0)
        self.sent.append((user_id, key))

    async def remove_member(self, chat_id: str, user_id: str) -> None:
        self.sent.append((chat_id, f"remove {user_id}"))


async def queue(db: Database, now: datetime, *users: str) -> list[int]:
    async with db.transaction() as s:
        rows = [
            enqueue(
                s,
                "notify",
                "telegram",
                {"user_id": u, "key": "help", "params": {}, "language": "en"},
                now,
            )
            for u in users
        ]
        await s.flush()
        return [r.id for r in rows]


async def rows(db: Database) -> dict[int, Outbox]:
    async with db.session() as s:
        return {r.id: r for r in (await s.execute(select(Outbox))).scalars()}


def worker(db: Database, gateway: RecordingGateway, clock: FakeClock, **kw: Any) -> OutboxWorker:
    return OutboxWorker(db, {"telegram": gateway}, clock, invite_ttl=timedelta(hours=1), **kw)


async def test_rows_of_a_crashed_worker_are_delivered_after_the_lease(db, now):
    ids = await queue(db, now, "1", "2", "3")
    crashed = await claim_due(db, now, 10, LEASE)  # ...and the process dies: never settled
    assert [r.id for r in crashed] == ids
    gw = RecordingGateway()
    clock = FakeClock(now + timedelta(seconds=60))
    w = worker(db, gw, clock, lease=LEASE)
    assert await w.run_once() == 0 and gw.sent == []  # still leased to the dead worker
    clock.t = now + LEASE
    assert await w.run_once() == 3
    assert sorted(gw.sent) == [("1", "help"), ("2", "help"), ("3", "help")]
    assert {(r.status, r.attempts) for r in (await rows(db)).values()} == {("done", 2)}
    assert await w.run_once() == 0 and len(gw.sent) == 3  # nothing twice


async def test_a_late_settle_cannot_overwrite_a_newer_claim(db, now):
    [rid] = await queue(db, now, "1")
    [slow] = await claim_due(db, now, 1, LEASE)
    [fresh] = await claim_due(db, now + LEASE, 1, LEASE)  # the lease ran out: claimed again
    assert await settle(db, rid, claimed_attempts=fresh.attempts) is True
    assert (
        await settle(db, rid, status="pending", retry_at=now, claimed_attempts=slow.attempts)
        is False
    )
    assert (await rows(db))[rid].status == "done"


async def test_429_retry_after_is_obeyed(db, now):
    [rid] = await queue(db, now, "1")
    gw = RecordingGateway()
    gw.script["1"] = [RetryAfter(30)]
    clock = FakeClock(now)
    w = worker(db, gw, clock)
    assert await w.run_once() == 1
    row = (await rows(db))[rid]
    assert row.status == "pending" and row.next_attempt_at == now + timedelta(seconds=30)
    assert row.attempts == 0  # being rate limited is not a failure of the row
    clock.t = now + timedelta(seconds=29)
    assert await w.run_once() == 0 and gw.sent == []
    clock.t = now + timedelta(seconds=30)
    assert await w.run_once() == 1 and gw.sent == [("1", "help")]
    assert (await rows(db))[rid].status == "done"


async def test_server_errors_back_off_and_refusals_are_kept(db, now):
    flaky, blocked = await queue(db, now, "1", "2")
    gw = RecordingGateway()
    gw.script["1"] = [TransientError("502 Bad Gateway"), TransientError("timeout")]
    gw.script["2"] = [RejectedError("Forbidden: bot was blocked by the user")]
    clock = FakeClock(now)
    w = worker(db, gw, clock)
    assert await w.run_once() == 2
    got = await rows(db)
    assert got[flaky].next_attempt_at == now + timedelta(seconds=2)  # 2 ** attempts
    assert got[blocked].status == "failed" and "blocked" in got[blocked].last_error
    clock.t = now + timedelta(seconds=2)
    assert await w.run_once() == 1
    assert (await rows(db))[flaky].next_attempt_at == clock.t + timedelta(seconds=4)
    clock.t += timedelta(seconds=4)
    assert await w.run_once() == 1
    assert gw.sent == [("1", "help")] and (await rows(db))[flaky].status == "done"
    assert (w.delivered, w.failed) == (1, 1)


async def test_one_slow_chat_does_not_hold_up_the_others(db, now):
    await queue(db, now, "slow", *[str(i) for i in range(20)], "slow")
    gw = RecordingGateway()
    gw.hold["slow"] = asyncio.Event()
    w = worker(db, gw, FakeClock(now), concurrency=8, batch=8)
    task = asyncio.create_task(w.run_forever(0.01))
    try:
        for _ in range(500):
            if len(gw.sent) == 20 and w.in_flight == 2:
                break
            await asyncio.sleep(0.01)
        # Twenty rows of other chats went out while the first row waited the whole time,
        # through slots freed and claimed again (8 at a time); only the slow chat's are left.
        assert len(gw.sent) == 20 and ("slow", "help") not in gw.sent
        assert w.in_flight == 2
        gw.hold["slow"].set()
        for _ in range(500):
            if len(gw.sent) == 22:
                break
            await asyncio.sleep(0.01)
        assert gw.sent[-2:] == [("slow", "help"), ("slow", "help")]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert {r.status for r in (await rows(db)).values()} == {"done"}


async def test_stopping_hands_rows_in_flight_back(db, now):
    [rid] = await queue(db, now, "stuck")
    gw = RecordingGateway()
    gw.hold["stuck"] = asyncio.Event()  # never set: the call hangs
    w = worker(db, gw, FakeClock(now))
    task = asyncio.create_task(w.run_forever(0.01))
    for _ in range(200):
        if w.in_flight:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    row = (await rows(db))[rid]
    # Back at once, not after the lease, and not counted as an attempt.
    assert (row.status, row.next_attempt_at, row.attempts) == ("pending", now, 0)


class BusyChatGateway(RecordingGateway):
    """The chat's rate budget is spent: check_budget sends every invite away for 42 s."""

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[str] = []

    def check_budget(self, chat_id: str) -> None:
        self.checked.append(chat_id)
        raise RetryAfter(42, f"rate budget: chat {chat_id} is busy")

    async def create_invite(self, chat_id: str, **kw: Any) -> str:
        self.sent.append((chat_id, "create_invite"))
        return "https://t.me/+never"


async def test_an_invite_for_a_busy_chat_goes_back_before_any_work(db, now):
    from billing.ingest import process_notice
    from billing.providers.sandbox_provider import SandboxProvider
    from tests.factories import SANDBOX_SECRET, make_order, make_shop, sandbox_event

    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    headers, body = sandbox_event(order)
    notice = SandboxProvider(SANDBOX_SECRET, "http://127.0.0.1").parse_webhook(headers, body)
    assert (await process_notice(db, "sandbox", notice, now)).outcome == "granted"
    (invite,) = (await rows(db)).values()
    # The grant names the chat, so the worker can ask its budget first.
    assert invite.kind == "deliver_invite" and invite.payload["chat_id"] == shop.group.chat_id
    gw = BusyChatGateway()
    assert await worker(db, gw, FakeClock(now)).run_once() == 1
    assert gw.checked == [shop.group.chat_id] and gw.sent == []
    invite = (await rows(db))[invite.id]
    assert (invite.status, invite.attempts) == ("pending", 0)
    assert invite.next_attempt_at == now + timedelta(seconds=42)
