"""/broadcast's rules on both databases: who is a recipient, what is queued in the command's
transaction, how outcomes are counted (a 429 is not one), and that every broadcast gets
exactly one report: with outcomes recorded concurrently, with a row claimed twice, and with
a worker stopped while a message is on its way."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiogram.exceptions import TelegramForbiddenError
from aiogram.methods import SendMessage
from sqlalchemy import func, select
from sqlmodel import col

from bot.commands import ArgError, parse_broadcast_args
from bot.gateway import call
from membership.admin import UserRef, grant_access
from membership.broadcast import SEND_KIND, queue_broadcast, recipient_ids
from membership.broadcast_send import REPORT_KEY, TEXT_KEY, Outcome, record_outcome
from membership.errors import RuleError
from membership.gateway import BlockedError, Button, RejectedError, RetryAfter
from membership.policy import whitelist
from scheduler.outbox import OutboxWorker
from storage.db import Database
from storage.models import Broadcast, BroadcastRecipient, ChatGroup, Membership, Outbox, User
from storage.outbox import claim_due
from storage.queries import get_or_create_user
from tests.factories import Shop, make_shop

LEASE = timedelta(seconds=120)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.t = now

    def now(self) -> datetime:
        return self.t


class Gateway:
    """Records every message; `script[user_id]` lists the errors successive sends to that
    user raise first; `hold` makes sends wait until it is set."""

    platform = "telegram"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.script: dict[str, list[Exception]] = {}
        self.hold: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def send(
        self,
        user_id: str,
        key: str,
        params: dict[str, Any],
        language: str | None,
        buttons: list[Button] | None = None,
    ) -> None:
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()
        failures = self.script.get(user_id)
        if failures:
            raise failures.pop(0)
        self.sent.append((user_id, key, params))

    def to(self, key: str) -> list[str]:
        return [u for u, k, _ in self.sent if k == key]


def worker(db: Database, gw: Gateway, clock: Clock) -> OutboxWorker:
    return OutboxWorker(db, {"telegram": gw}, clock, invite_ttl=timedelta(hours=1), lease=LEASE)


async def member(
    db: Database,
    shop: Shop,
    tg_id: str,
    now: datetime,
    *,
    status: str = "active",
    expires_at: datetime | str | None = "30d",
    platform: str = "telegram",
    group: ChatGroup | None = None,
) -> int:
    async with db.transaction() as s:
        u = await get_or_create_user(s, platform, tg_id, now)
        s.add(
            Membership(
                user_id=u.id,
                chat_group_id=(group or shop.group).id,
                plan_id=shop.plan.id,
                status=status,
                starts_at=now - timedelta(days=1),
                expires_at=now + timedelta(days=30) if expires_at == "30d" else expires_at,
                updated_at=now,
            )
        )
        await s.flush()
        assert u.id is not None
        return u.id


async def queue(db: Database, shop: Shop, now: datetime, text: str = "Hello *all* <b>") -> int:
    async with db.transaction() as s:
        owner = await s.get(User, shop.owner.id)
        group = await s.get(ChatGroup, shop.group.id)
        assert owner is not None and group is not None
        return (await queue_broadcast(s, owner, group, text, now, per_second=10)).broadcast_id


async def broadcast_row(db: Database, bid: int) -> Broadcast:
    async with db.session() as s:
        b = await s.get(Broadcast, bid)
        assert b is not None
        return b


async def reports(db: Database) -> list[dict[str, Any]]:
    async with db.session() as s:
        rows = (await s.execute(select(Outbox).where(Outbox.kind == "notify"))).scalars()
        return [r.payload for r in rows if r.payload.get("key") == REPORT_KEY]


async def drain(w: OutboxWorker, clock: Clock, seconds: float = 10) -> None:
    """Run the worker, moving the clock over the broadcast's pacing and any retry_after."""
    for _ in range(int(seconds * 10)):
        await w.drain()
        clock.t += timedelta(seconds=0.1)
    await w.drain()


# -- who gets it --------------------------------------------------------------------------------


async def test_recipients_are_the_members_with_active_access_right_now(db, now):
    shop = await make_shop(db, now, groups=2)
    active = await member(db, shop, "11", now)
    lifetime = await member(db, shop, "12", now, expires_at=None)
    await member(db, shop, "13", now, expires_at=now - timedelta(hours=1))  # in grace
    await member(db, shop, "14", now, status="expired", expires_at=now - timedelta(days=2))
    await member(db, shop, "15", now, status="revoked")
    await member(db, shop, "16", now, status="pending_approval")
    await member(db, shop, "17", now, platform="wechat")  # not reachable on Telegram
    async with db.transaction() as s:
        other = (await s.execute(select(ChatGroup).where(ChatGroup.id != shop.group.id))).scalar()
    await member(db, shop, "18", now, group=other)  # another group
    async with db.transaction() as s:  # whitelisted, without a membership
        owner = await s.get(User, shop.owner.id)
        group = await s.get(ChatGroup, shop.group.id)
        await whitelist(s, owner, group, "19", now, add=True)
    async with db.session() as s:
        group = await s.get(ChatGroup, shop.group.id)
        assert await recipient_ids(s, group, now) == sorted([active, lifetime])


async def test_a_member_through_two_plans_is_one_recipient(db, now):
    shop = await make_shop(db, now)
    async with db.transaction() as s:  # a plan, then an owner's grant: one person, twice
        owner = await s.get(User, shop.owner.id)
        group = await s.get(ChatGroup, shop.group.id)
        await grant_access(s, owner, group, UserRef(platform_user_id="21"), 30, now)
        await grant_access(s, owner, group, UserRef(platform_user_id="21"), None, now)
    bid = await queue(db, shop, now)
    assert (await broadcast_row(db, bid)).recipients == 1
    async with db.session() as s:
        n = await s.execute(select(func.count()).select_from(BroadcastRecipient))
        assert n.scalar_one() == 1


# -- what the command queues --------------------------------------------------------------------


async def test_queued_in_one_transaction_one_row_per_recipient_paced(db, now):
    shop = await make_shop(db, now)
    ids = [await member(db, shop, str(30 + i), now) for i in range(4)]
    bid = await queue(db, shop, now)
    b = await broadcast_row(db, bid)
    assert (b.recipients, b.delivered, b.blocked, b.failed, b.finished_at) == (4, 0, 0, 0, None)
    assert b.text == "Hello *all* <b>" and b.owner_user_id == shop.owner.id
    async with db.session() as s:
        recipients = (await s.execute(select(BroadcastRecipient))).scalars().all()
        rows = (
            (await s.execute(select(Outbox).where(Outbox.kind == SEND_KIND).order_by(Outbox.id)))
            .scalars()
            .all()
        )
    assert sorted(r.user_id for r in recipients) == sorted(ids)
    assert {r.status for r in recipients} == {"pending"}
    assert sorted(r.payload["recipient_id"] for r in rows) == sorted(r.id for r in recipients)
    # Due one after another (10 a second here), not all at once.
    assert [r.next_attempt_at - now for r in rows] == [timedelta(seconds=i / 10) for i in range(4)]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("   ", "broadcast_empty"),
        ("x" * 4097, "broadcast_too_long"),
        ("😀" * 2049, "broadcast_too_long"),  # 4098 UTF-16 units, as Telegram counts
    ],
)
async def test_refused_texts_queue_nothing(db, now, text, key):
    shop = await make_shop(db, now)
    await member(db, shop, "40", now)
    with pytest.raises(RuleError) as refused:
        await queue(db, shop, now, text)
    assert refused.value.key == key
    assert await count(db, Broadcast) == 0 and await count(db, Outbox) == 0


async def test_a_group_without_active_members_queues_nothing(db, now):
    shop = await make_shop(db, now)
    await member(db, shop, "41", now, status="expired")
    with pytest.raises(RuleError) as refused:
        await queue(db, shop, now)
    assert refused.value.key == "broadcast_no_members"
    assert await count(db, Broadcast) == 0 and await count(db, Outbox) == 0


async def count(db: Database, model: Any) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


def test_parse_broadcast_args():
    args = parse_broadcast_args("#1  Line one\n  line *two* <b>  ")
    assert (args.group_ref, args.text) == ("1", "Line one\n  line *two* <b>")
    assert parse_broadcast_args("-1001234 hi").group_ref == "-1001234"
    for bad, key in [
        (None, "missing_args"),
        ("", "missing_args"),
        ("1", "missing_args"),
        ("1   ", "missing_args"),
        ("hello everyone", "group_ref_invalid"),
        ("1 " + "x" * 4097, "broadcast_too_long"),
    ]:
        with pytest.raises(ArgError) as refused:
            parse_broadcast_args(bad)
        assert refused.value.key == key, bad
    assert len(parse_broadcast_args("1 " + "x" * 4096).text) == 4096


# -- delivery, outcomes and the one report -----------------------------------------------------


async def test_outcomes_are_counted_and_reported_once(db, now):
    shop = await make_shop(db, now)
    for i in range(5):
        await member(db, shop, str(50 + i), now)
    bid = await queue(db, shop, now)
    gw = Gateway()
    gw.script["50"] = [RetryAfter(3)]  # waited out, then delivered: not an outcome
    gw.script["51"] = [BlockedError("Forbidden: bot was blocked by the user")]
    gw.script["52"] = [BlockedError("Forbidden: user is deactivated")]
    gw.script["53"] = [RejectedError("Bad Request: chat not found")]
    clock = Clock(now)
    w = worker(db, gw, clock)
    await drain(w, clock)
    assert sorted(gw.to(TEXT_KEY)) == ["50", "54"]
    assert all(p == {"text": "Hello *all* <b>"} for _, k, p in gw.sent if k == TEXT_KEY)
    b = await broadcast_row(db, bid)
    assert (b.delivered, b.blocked, b.failed) == (2, 2, 1) and b.finished_at is not None
    assert gw.to(REPORT_KEY) == [shop.owner.platform_user_id]
    (report,) = await reports(db)
    assert report["params"] == {
        "broadcast_id": bid,
        "group": shop.group.title,
        "group_id": shop.group.id,
        "recipients": 5,
        "delivered": 2,
        "blocked": 2,
        "failed": 1,
    }
    async with db.session() as s:
        outcomes = dict(
            (
                await s.execute(
                    select(col(User.platform_user_id), col(BroadcastRecipient.status)).join(
                        User, col(User.id) == col(BroadcastRecipient.user_id)
                    )
                )
            ).all()
        )
        rows = (await s.execute(select(Outbox).where(Outbox.kind == SEND_KIND))).scalars().all()
    assert outcomes == {
        "50": "delivered",
        "51": "blocked",
        "52": "blocked",
        "53": "failed",
        "54": "delivered",
    }
    assert sorted(r.status for r in rows) == ["done", "done", "failed", "failed", "failed"]
    # Nothing more happens: no second message, no second report.
    clock.t += timedelta(hours=1)
    await w.drain()
    assert len(gw.to(TEXT_KEY)) == 2 and len(gw.to(REPORT_KEY)) == 1


async def test_concurrent_last_outcomes_make_exactly_one_report(db, now):
    """Every recipient's outcome recorded at the same time, each in its own transaction
    (on PostgreSQL: concurrent transactions; on SQLite they queue for the write lock):
    exactly one of them sees the last count and queues the report."""
    shop = await make_shop(db, now)
    for i in range(12):
        await member(db, shop, str(60 + i), now)
    bid = await queue(db, shop, now)
    async with db.session() as s:
        rids = list((await s.execute(select(col(BroadcastRecipient.id)))).scalars())

    def outcome_of(rid: int) -> Outcome:
        return Outcome(("delivered", "blocked", "failed")[rid % 3])

    async def one(rid: int) -> bool:
        async with db.transaction() as s:
            return await record_outcome(s, bid, rid, outcome_of(rid), now)

    assert all(await asyncio.gather(*(one(r) for r in rids)))
    # ...and recorded a second time (a row claimed again): nothing changes.
    assert not any(await asyncio.gather(*(one(r) for r in rids)))
    b = await broadcast_row(db, bid)
    want = [sum(1 for r in rids if outcome_of(r).status == k) for k in ("delivered", "blocked")]
    assert [b.delivered, b.blocked] == want and b.failed == 12 - sum(want)
    assert b.finished_at is not None
    assert len(await reports(db)) == 1


async def test_a_row_claimed_again_after_its_lease_sends_nothing_twice(db, now):
    shop = await make_shop(db, now)
    await member(db, shop, "70", now)
    await queue(db, shop, now)
    gw = Gateway()
    clock = Clock(now)
    w = worker(db, gw, clock)
    [first] = await claim_due(db, now, 10, LEASE)  # a worker that dies after sending
    assert first.kind == SEND_KIND
    clock.t = now + LEASE
    await drain(w, clock, seconds=1)  # the row comes back: sent (the at-least-once window)
    assert gw.to(TEXT_KEY) == ["70"]
    # Now the same row claimed once more (a lost settle): its outcome is stored, so no send.
    async with db.transaction() as s:
        row = await s.get(Outbox, first.id)
        assert row is not None
        row.status, row.next_attempt_at = "pending", clock.t
    await drain(w, clock, seconds=1)
    assert gw.to(TEXT_KEY) == ["70"] and len(gw.to(REPORT_KEY)) == 1


async def test_a_stop_while_a_message_is_on_its_way_records_it_instead_of_handing_it_back(db, now):
    shop = await make_shop(db, now)
    await member(db, shop, "80", now)
    await member(db, shop, "81", now)
    bid = await queue(db, shop, now)
    gw = Gateway()
    gw.hold = asyncio.Event()
    clock = Clock(now)
    w = worker(db, gw, clock)
    running = asyncio.create_task(w.run_forever(0.05))
    await asyncio.wait_for(gw.started.wait(), 5)  # the first message is on its way
    running.cancel()  # SIGTERM
    await asyncio.sleep(0.1)
    gw.hold.set()  # ...and Telegram answers
    await asyncio.gather(running, return_exceptions=True)
    assert gw.to(TEXT_KEY) == ["80"]
    async with db.session() as s:
        rows = {
            r.payload["recipient_id"]: r
            for r in (await s.execute(select(Outbox).where(Outbox.kind == SEND_KIND))).scalars()
        }
        statuses = dict(
            (
                await s.execute(select(col(BroadcastRecipient.id), col(BroadcastRecipient.status)))
            ).all()
        )
    assert sorted(statuses.values()) == ["delivered", "pending"]
    assert {rows[rid].status for rid, st in statuses.items() if st == "delivered"} == {"done"}
    # The next start sends the rest, nobody twice, and reports once.
    clock.t += timedelta(seconds=1)
    await drain(worker(db, gw, clock), clock, seconds=1)
    assert sorted(gw.to(TEXT_KEY)) == ["80", "81"] and len(gw.to(REPORT_KEY)) == 1
    assert (await broadcast_row(db, bid)).delivered == 2


async def test_telegram_403_blocked_or_deactivated_is_told_apart_from_other_refusals():
    method = SendMessage(chat_id=1, text="x")

    async def failing(description: str) -> None:
        raise TelegramForbiddenError(method=method, message=description)

    for description in ("Forbidden: bot was blocked by the user", "Forbidden: user is deactivated"):
        with pytest.raises(BlockedError):
            await call(failing(description))
    with pytest.raises(RejectedError) as other:
        await call(failing("Forbidden: bot can't initiate conversation with a user"))
    assert not isinstance(other.value, BlockedError)
