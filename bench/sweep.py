"""Flow 5 at scale: how long the sweeps take to find due rows, and how fast lapsed members are
really removed through the outbox, the rate limiter and the Telegram Bot API emulator.

    .venv/bin/python bench/sweep.py                       # temporary SQLite file
    .venv/bin/python bench/sweep.py --database-url postgresql+asyncpg://postgres@127.0.0.1/test
    .venv/bin/python bench/sweep.py --remove 2000         # a longer removal run

Part 1 seeds --total memberships (default 100,000): --lapsed (10,000) past their grace
period, --remind (1,000) due a reminder, the rest due for nothing. It times the claim queries
of the sweeps, first with only the due rows in the table, then with all of them: the times
should match (the queries read the index range of due rows, whatever else the table holds),
and prints the plans (EXPLAIN QUERY PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL).

Part 2 seeds --remove lapsed members (default 600) spread over --groups (200) supergroups in
the Telegram emulator (`python -m sandbox.telegram`, started here in a process of its own),
which enforces Telegram's published limits (30 calls/s, 1/s per chat), and runs the real
path: the scheduler's removal sweep (remove_lapsed) queues ban+unban and a notice per member,
and the outbox worker delivers them through TelegramGateway within our configured budget. It
prints the Bot API call rate achieved against that budget (target: at least 90 %), the 429s
received and left unhandled (must be 0), and this process's RSS at start, middle and end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from sqlalchemy import func, insert, select, text

from bot.gateway import RateLimiter, TelegramGateway
from membership.lapse import due_reminders, due_removals
from sandbox.telegram import EmulatorClient
from scheduler.jobs import Sweeps
from scheduler.outbox import OutboxWorker
from storage.clock import SystemClock
from storage.db import Database
from storage.migrate import upgrade
from storage.models import ChatGroup, Membership, Outbox, User

TOKEN = "777000:bench-token"
BOT_ID = 777000
OWNER = 1
GRACE_HOURS, REMINDER_DAYS, BATCH = 24, 3, 500
DAY = timedelta(days=1)


# --- helpers -------------------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@asynccontextmanager
async def database(url: str | None, label: str) -> AsyncIterator[Database]:
    """A fresh, migrated database: a temporary SQLite file, or a throwaway PostgreSQL schema."""
    if url is None:
        with tempfile.TemporaryDirectory(prefix="gatepass-bench-") as tmp:
            db = Database(f"sqlite+aiosqlite:///{tmp}/{label}.db")
            await upgrade(db)
            try:
                yield db
            finally:
                await db.dispose()
        return
    schema = f"bench_{label}_{secrets.token_hex(4)}"
    admin = Database(url)
    async with admin.transaction() as s:
        await s.execute(text(f'CREATE SCHEMA "{schema}"'))
    db = Database(url, search_path=schema)
    try:
        await upgrade(db)
        yield db
    finally:
        await db.dispose()
        async with admin.transaction() as s:
            await s.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def bulk(db: Database, model: Any, rows: list[dict[str, Any]], chunk: int = 5000) -> None:
    for i in range(0, len(rows), chunk):
        async with db.transaction() as s:
            await s.execute(insert(model), rows[i : i + chunk])


async def seed_shop(db: Database, now: datetime, groups: int) -> list[int]:
    """The owner and `groups` groups with ids 1..groups, chat ids -100<n>."""
    await bulk(
        db,
        User,
        [
            {
                "id": OWNER,
                "platform": "telegram",
                "platform_user_id": str(OWNER),
                "refund_policy": "revoke",
                "created_at": now,
            }
        ],
    )
    await bulk(
        db,
        ChatGroup,
        [
            {
                "id": g,
                "platform": "telegram",
                "chat_id": chat_id(g),
                "title": f"Group {g}",
                "owner_user_id": OWNER,
                "invite_mode": "join_request",
                "active": True,
                "created_at": now,
            }
            for g in range(1, groups + 1)
        ],
    )
    return list(range(1, groups + 1))


def chat_id(group: int) -> str:
    return str(-1000000000000 - group)


async def seed_members(
    db: Database, now: datetime, first: int, n: int, groups: int, kind: str
) -> None:
    """n users with one membership each, ids first..first+n-1, spread over the groups.

    kind "lapsed": ended 25 h to 60 days ago (past the grace period: due for removal);
    kind "remind": ending within the reminder window (due for a reminder);
    kind "not_due": due for neither: active ending later than the reminder window, or
    still in the grace period, lifetime, and memberships that ended long ago.
    """
    rnd = random.Random(first)
    users, members = [], []
    for i in range(first, first + n):
        users.append(
            {
                "id": i,
                "platform": "telegram",
                "platform_user_id": str(i),
                "language": "en",
                "refund_policy": "revoke",
                "created_at": now,
            }
        )
        status, expires = "active", None
        if kind == "lapsed":
            expires = now - timedelta(hours=GRACE_HOURS + 1) - rnd.random() * 59 * DAY
        elif kind == "remind":
            expires = (
                now
                + timedelta(minutes=1)
                + rnd.random() * (REMINDER_DAYS * DAY - timedelta(minutes=2))
            )
        else:
            r = rnd.random()
            if r < 0.85:
                expires = now + (REMINDER_DAYS + 1) * DAY + rnd.random() * 360 * DAY
            elif r < 0.88:
                expires = now - rnd.random() * timedelta(hours=GRACE_HOURS - 1)
            elif r < 0.94:
                expires = None  # lifetime
            else:
                status, expires = "expired", now - rnd.random() * 365 * DAY
        members.append(
            {
                "id": i,
                "user_id": i,
                "chat_group_id": 1 + i % groups,
                "status": status,
                "starts_at": now - 400 * DAY,
                "expires_at": expires,
                "auto_renew": False,
                "updated_at": now,
            }
        )
    await bulk(db, User, users)
    await bulk(db, Membership, members)
    if not db.is_sqlite:
        async with db.transaction() as s:
            await s.execute(text("ANALYZE membership"))


async def timed(db: Database, stmt: Any, repeats: int = 7) -> tuple[int, float]:
    """(rows, median seconds) of running the claim query in a transaction, rolled back;
    after one run to warm the caches."""
    times, n = [], 0
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        async with db.session() as s, s.begin():
            n = len((await s.execute(stmt)).all())
            await s.rollback()
        if i:
            times.append(time.perf_counter() - t0)
    return n, statistics.median(times)


async def explain(db: Database, stmt: Any) -> list[str]:
    """The plan the database picks for the statement (PostgreSQL: with actual times)."""
    async with db.engine.connect() as conn:
        compiled = stmt.compile(dialect=conn.dialect)
        values = compiled.construct_params()
        params = tuple(values[k] for k in compiled.positiontup or ())
        prefix = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
        rows = (await conn.exec_driver_sql(prefix + str(compiled), params)).all()
        await conn.rollback()
    return [str(r[-1]) for r in rows]


# --- part 1: finding the due rows ----------------------------------------------------------


async def part1(args: argparse.Namespace) -> None:
    now = datetime.now(UTC)
    dialect = "sqlite" if args.database_url is None else "postgresql"
    print(
        f"== part 1: due-row queries on {dialect}: {args.total:,} memberships, "
        f"{args.lapsed:,} lapsed and {args.remind:,} due a reminder"
    )
    async with database(args.database_url, "select") as db:
        t0 = time.perf_counter()
        await seed_shop(db, now, args.groups)
        await seed_members(db, now, 1_000_000, args.lapsed, args.groups, "lapsed")
        await seed_members(db, now, 1_500_000, args.remind, args.groups, "remind")
        seeded = time.perf_counter() - t0
        due = args.lapsed + args.remind
        queries = {
            f"removal, all due ({args.lapsed:,})": due_removals(now, GRACE_HOURS, args.lapsed),
            f"removal, one batch ({BATCH})": due_removals(now, GRACE_HOURS, BATCH),
            f"reminder, all due ({args.remind:,})": due_reminders(now, REMINDER_DAYS, args.remind),
            f"reminder, one batch ({BATCH})": due_reminders(now, REMINDER_DAYS, BATCH),
        }
        small = {name: await timed(db, q) for name, q in queries.items()}
        t0 = time.perf_counter()
        await seed_members(db, now, 2_000_000, args.total - due, args.groups, "not_due")
        seeded += time.perf_counter() - t0
        async with db.session() as s:
            total = (await s.execute(select(func.count()).select_from(Membership))).scalar_one()
        big = {name: await timed(db, q) for name, q in queries.items()}
        print(f"   seeded {total:,} memberships with bulk inserts in {seeded:.1f} s")
        print(
            f"   median of 7 runs of each claim query (run and rolled back), with only the "
            f"{due:,} due rows in the table, then with all {total:,}:"
        )
        print(f"   {'query':<30} {'rows':>13} {'only due':>11} {'all':>11} {'ratio':>6}")
        for name in queries:
            (n1, t1), (n2, t2) = small[name], big[name]
            print(
                f"   {name:<30} {n1:>6,}/{n2:<6,} {t1 * 1000:>8.1f} ms {t2 * 1000:>8.1f} ms "
                f"{t2 / t1:>6.2f}"
            )
        print("   plan of the removal batch query:")
        for line in await explain(db, queries[f"removal, one batch ({BATCH})"]):
            print(f"     {line}")
        print("   plan of the reminder batch query:")
        for line in await explain(db, queries[f"reminder, one batch ({BATCH})"]):
            print(f"     {line}")


# --- part 2: removing through the emulator -------------------------------------------------


async def seed_emulator(tg: EmulatorClient, users: list[int], groups: int) -> None:
    await tg.create_bot(TOKEN, username="gatepass_bot")
    await tg.create_user(OWNER, "Owner")
    for g in range(1, groups + 1):
        await tg.create_chat(int(chat_id(g)), creator_id=OWNER, title=f"Group {g}")
        await tg.promote(int(chat_id(g)), BOT_ID)

    async def one(uid: int) -> None:
        await tg.create_user(uid, f"Buyer {uid}")
        await tg.send_text(uid, "/start")  # they wrote to the bot: it may message them
        await tg.add_member(int(chat_id(1 + uid % groups)), uid)

    for i in range(0, len(users), 50):
        await asyncio.gather(*(one(u) for u in users[i : i + 50]))


async def outbox_counts(db: Database) -> dict[str, int]:
    async with db.session() as s:
        return dict(
            (await s.execute(select(Outbox.status, func.count()).group_by(Outbox.status))).all()
        )


async def part2(args: argparse.Namespace) -> bool:
    n, groups = args.remove, args.groups
    print(f"\n== part 2: removing {n:,} lapsed members of {groups} groups through the emulator")
    # The emulator runs in a process of its own: the RSS and the event loop measured here are
    # the service's alone, as they would be against Telegram.
    emulator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox.telegram",
        "--port",
        "0",
        cwd=Path(__file__).resolve().parents[1],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert emulator.stdout is not None
        banner = (await asyncio.wait_for(emulator.stdout.readline(), timeout=30)).decode()
        base_url = next(w for w in banner.split() if w.startswith("http://"))
    except BaseException:
        emulator.terminate()
        await emulator.wait()
        raise
    tg = EmulatorClient(base_url)
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))
    ok = True
    try:
        async with database(args.database_url, "remove") as db:
            now = datetime.now(UTC)
            users = list(range(10_000, 10_000 + n))
            await seed_shop(db, now, groups)
            await seed_members(db, now, users[0], n, groups, "lapsed")
            t0 = time.perf_counter()
            await seed_emulator(tg, users, groups)
            print(
                f"   emulator seeded in {time.perf_counter() - t0:.1f} s "
                f"({n:,} users who started the bot, in {groups} supergroups)"
            )
            # Telegram's published limits: 30 calls/s per bot, about 1/s per chat.
            await tg.set_rate_limit(global_per_second=30, per_chat_per_second=1)
            clock = SystemClock()
            limiter = RateLimiter(args.rate_global, args.rate_chat, args.rate_group)
            gateway = TelegramGateway(bot, "gatepass_bot", clock, limiter)
            worker = OutboxWorker(
                db,
                {"telegram": gateway},
                clock,
                invite_ttl=timedelta(hours=24),
                concurrency=args.concurrency,
            )
            sweeps = Sweeps(
                db,
                clock,
                interval_seconds=30,
                reminder_days=REMINDER_DAYS,
                grace_hours=GRACE_HOURS,
                batch=BATCH,
                wake_outbox=worker.wake,
            )
            seen = await tg.calls()
            first_seq = seen[-1]["seq"] if seen else 0
            mem = {"start": (rss_mb(), peak_mb())}
            t0 = time.perf_counter()
            task = asyncio.create_task(worker.run_forever(0.2))
            removed = await sweeps.remove(clock.now())
            swept = time.perf_counter() - t0
            expected = 2 * removed  # remove_member + the access_ended notice each
            while True:
                await asyncio.sleep(0.5)
                counts = await outbox_counts(db)
                finished = counts.get("done", 0) + counts.get("failed", 0)
                if "middle" not in mem and finished >= expected // 2:
                    mem["middle"] = (rss_mb(), peak_mb())
                if finished >= expected:
                    break
                if time.perf_counter() - t0 > args.timeout:
                    print(f"   timed out after {args.timeout} s: {counts}")
                    ok = False
                    break
            elapsed = time.perf_counter() - t0
            mem["end"] = (rss_mb(), peak_mb())
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            calls = await tg.calls(since=first_seq)
            counts = await outbox_counts(db)

        by_method: dict[str, int] = {}
        for c in calls:
            if c["ok"]:
                by_method[c["method"]] = by_method.get(c["method"], 0) + 1
        served_429 = sum(1 for c in calls if c["error_code"] == 429)
        api_ok = sum(by_method.values())
        start_at = min(c["at"] for c in calls)
        window = max(c["at"] for c in calls) - start_at
        rate = api_ok / window  # from the first Bot API call to the last
        per_second = [0] * (int(window) + 1)
        for c in calls:
            per_second[int(c["at"] - start_at)] += 1
        members_left = 0
        for uid in users[:: max(1, n // 50)]:  # a sample of the chats, checked member by member
            status = await tg.member_status(int(chat_id(1 + uid % groups)), uid)
            members_left += status in ("member", "restricted", "kicked")
        unhandled = counts.get("failed", 0) + counts.get("pending", 0)
        print(
            f"   remove_lapsed queued {removed:,} removals in {swept:.2f} s "
            f"(batches of {BATCH}, outbox woken per batch)"
        )
        print(
            f"   all delivered {elapsed:.1f} s after the sweep began; Bot API calls made "
            f"in {window:.1f} s: " + ", ".join(f"{k} {v:,}" for k, v in sorted(by_method.items()))
        )
        print(
            f"   Bot API calls/s achieved: {rate:.1f} against our budget of "
            f"{args.rate_global:g}/s = {100 * rate / args.rate_global:.1f} % "
            f"(end to end, sweep included: {100 * api_ok / elapsed / args.rate_global:.1f} %)"
            f"\n   (budget per chat {args.rate_chat:g}/min; the emulator enforces Telegram's "
            f"30/s and 1/s per chat)"
        )
        full = per_second[:-1] or per_second
        print(
            f"   calls in each whole second: median {statistics.median(full):g}, "
            f"busiest {max(full)}; the last seconds, as the last chats finish their "
            f"queues: {', '.join(map(str, per_second[-6:]))}"
        )
        print(
            f"   removals/s: {removed / window:.2f} (3 calls each: ban, unban, notice; "
            f"at most {args.rate_global / 3:.2f} in the budget)"
        )
        print(
            f"   429s received: {served_429} (gateway saw {gateway.throttled}); "
            f"rows put back to wait for a budget: {worker.rate_limited}; "
            f"left unhandled: {unhandled} (outbox: {counts})"
        )
        print(
            f"   members still in their group (sample of {len(users[:: max(1, n // 50)])}): "
            f"{members_left}"
        )
        print(
            "   RSS MiB (current / peak): "
            + ", ".join(f"{k} {v[0]:.0f} / {v[1]:.0f}" for k, v in mem.items())
        )
        ok = ok and unhandled == 0 and members_left == 0 and rate >= 0.9 * args.rate_global
    finally:
        await bot.session.close()
        await tg.close()
        emulator.terminate()
        await emulator.wait()
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", help="postgresql+asyncpg://... (default: temporary SQLite)")
    p.add_argument("--total", type=int, default=100_000, help="memberships in part 1")
    p.add_argument("--lapsed", type=int, default=10_000, help="of which past their grace")
    p.add_argument("--remind", type=int, default=1_000, help="of which due a reminder")
    p.add_argument("--remove", type=int, default=600, help="members removed in part 2")
    p.add_argument("--groups", type=int, default=200, help="groups they are spread over")
    p.add_argument(
        "--rate-global",
        type=float,
        default=25.0,
        help="our global budget, calls/s (telegram.rate_global_per_second)",
    )
    p.add_argument(
        "--rate-chat",
        type=float,
        default=50.0,
        help="our per-chat budget, calls/min (telegram.rate_per_chat_per_minute)",
    )
    p.add_argument(
        "--rate-group",
        type=float,
        default=20.0,
        help="messages/min into a group (telegram.rate_per_group_per_minute)",
    )
    p.add_argument("--concurrency", type=int, default=100, help="scheduler.outbox_concurrency")
    p.add_argument("--timeout", type=float, default=600.0, help="give up part 2 after (s)")
    p.add_argument("--skip-select", action="store_true", help="only part 2")
    p.add_argument("--skip-remove", action="store_true", help="only part 1")
    args = p.parse_args()

    async def run() -> bool:
        if not args.skip_select:
            await part1(args)
        return True if args.skip_remove else await part2(args)

    return 0 if asyncio.run(run()) else 1


if __name__ == "__main__":
    sys.exit(main())
