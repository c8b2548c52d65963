"""Flow 5: renew reminders once per period, removal after the grace period, and replicas
that share the sweeps without repeating them."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, insert, select
from sqlmodel import col

from membership.grants import grant_days
from membership.lapse import BUY_LINK, remove_lapsed, send_reminders
from scheduler.jobs import Sweeps
from storage.db import Database
from storage.models import ChatGroup, Invite, Membership, Outbox, User
from tests.factories import Shop, make_shop

DAY = timedelta(days=1)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.t = now

    def now(self) -> datetime:
        return self.t


async def grant(
    db: Database,
    shop: Shop,
    now: datetime,
    days: int | None = 30,
    *,
    subscription_id: str | None = None,
) -> Membership:
    async with db.transaction() as s:
        user = await s.get(User, shop.buyer.id)
        group = await s.get(ChatGroup, shop.group.id)
        return await grant_days(
            s, user, group, days, now, actor="test", reason="test", subscription_id=subscription_id
        )


async def outbox(db: Database, kind: str | None = None, key: str | None = None) -> list[Outbox]:
    async with db.session() as s:
        rows = (await s.execute(select(Outbox).order_by(col(Outbox.id)))).scalars().all()
    return [
        r
        for r in rows
        if (kind is None or r.kind == kind) and (key is None or r.payload.get("key") == key)
    ]


async def membership(db: Database, mid: int) -> Membership:
    async with db.session() as s:
        m = await s.get(Membership, mid)
        assert m is not None
        return m


async def remind(db: Database, now: datetime) -> int:
    return await send_reminders(db, now, reminder_days=3, limit=100)


async def remove(db: Database, now: datetime) -> int:
    return await remove_lapsed(db, now, grace_hours=24, limit=100)


async def test_reminder_once_per_period_and_again_after_renewal(db, now):
    shop = await make_shop(db, now)
    m = await grant(db, shop, now)  # ends now + 30 days
    assert await remind(db, now + 26 * DAY) == 0  # 4 days left: not yet
    assert await remind(db, now + 27 * DAY + timedelta(seconds=1)) == 1
    assert await remind(db, now + 27 * DAY + timedelta(hours=1)) == 0
    assert await remind(db, now + 29 * DAY) == 0  # once per period
    [row] = await outbox(db, "notify", "renew_reminder")
    assert row.payload["user_id"] == shop.buyer.platform_user_id
    assert row.payload["params"] == {
        "group": shop.group.title,
        "group_id": shop.group.id,
        "until": (now + 30 * DAY).isoformat(),
    }
    assert row.payload["buttons"] == [
        {"text_key": "btn_renew", "url": BUY_LINK, "params": {"group": shop.group.title}}
    ]
    assert (await membership(db, m.id)).reminded_at == now + 27 * DAY + timedelta(seconds=1)

    # A renewal before the end extends the period (now + 60 days): a new reminder is due
    # three days before the new end, and only once.
    await grant(db, shop, now + 28 * DAY)
    assert await remind(db, now + 28 * DAY) == 0
    assert await remind(db, now + 56 * DAY) == 0
    assert await remind(db, now + 57 * DAY + timedelta(minutes=1)) == 1
    assert await remind(db, now + 58 * DAY) == 0
    assert len(await outbox(db, "notify", "renew_reminder")) == 2


async def test_auto_renewing_is_not_reminded(db, now):
    shop = await make_shop(db, now)
    m = await grant(db, shop, now, subscription_id="sub_1")
    assert m.auto_renew is True
    assert await remind(db, now + 29 * DAY) == 0
    async with db.transaction() as s:  # the buyer cancels auto-renew: now they need a nudge
        (await s.get(Membership, m.id)).auto_renew = False
    assert await remind(db, now + 29 * DAY) == 1


async def test_removal_only_after_the_grace_period(db, now):
    shop = await make_shop(db, now)
    m = await grant(db, shop, now)
    end = now + 30 * DAY
    assert await remove(db, end + timedelta(hours=23, minutes=59)) == 0
    assert (await membership(db, m.id)).status == "active"
    assert await remove(db, end + timedelta(hours=24, seconds=1)) == 1
    assert await remove(db, end + timedelta(hours=25)) == 0  # once
    ended = await membership(db, m.id)
    assert ended.status == "expired" and ended.auto_renew is False
    [rm] = await outbox(db, "remove_member")
    assert rm.payload == {"chat_id": shop.group.chat_id, "user_id": shop.buyer.platform_user_id}
    [note] = await outbox(db, "notify", "access_ended")
    assert note.payload["params"]["group_id"] == shop.group.id  # the gateway adds buy_link
    # An ended membership is neither reminded nor removed again.
    assert await remind(db, end + timedelta(hours=26)) == 0


async def test_lifetime_never_lapses(db, now):
    shop = await make_shop(db, now, duration_days=None)
    m = await grant(db, shop, now, days=None)
    assert m.expires_at is None
    far = now + 365 * 100 * DAY
    assert await remove(db, far) == 0 and await remind(db, far) == 0
    assert (await membership(db, m.id)).status == "active"


async def test_unused_invites_are_revoked_on_removal(db, now):
    shop = await make_shop(db, now)
    m = await grant(db, shop, now)
    async with db.transaction() as s:
        s.add_all(
            [
                Invite(membership_id=m.id, link="https://t.me/+unused", created_at=now),
                Invite(
                    membership_id=m.id, link="https://t.me/+used", used_by="2000", created_at=now
                ),
                Invite(membership_id=m.id, link="https://t.me/+gone", revoked=True, created_at=now),
            ]
        )
    assert await remove(db, now + 32 * DAY) == 1
    async with db.session() as s:
        invites = {i.link: i.revoked for i in (await s.execute(select(Invite))).scalars()}
    assert invites == {
        "https://t.me/+unused": True,
        "https://t.me/+used": False,
        "https://t.me/+gone": True,
    }
    [rv] = await outbox(db, "revoke_invite")
    assert rv.payload == {"chat_id": shop.group.chat_id, "link": "https://t.me/+unused"}


async def test_buying_again_after_removal_makes_them_active(db, now):
    shop = await make_shop(db, now)
    m = await grant(db, shop, now)
    await remind(db, now + 28 * DAY)
    later = now + 40 * DAY
    assert await remove(db, later) == 1
    again = await grant(db, shop, later)
    assert again.id == m.id
    back = await membership(db, m.id)
    assert back.status == "active" and back.expires_at == later + 30 * DAY
    assert back.reminded_at is None
    assert [r.payload["membership_id"] for r in await outbox(db, "deliver_invite")] == [m.id, m.id]
    # ...and the new period gets its own reminder and its own removal.
    assert await remind(db, later + 28 * DAY) == 1
    assert await remove(db, later + 32 * DAY) == 1
    assert len(await outbox(db, "remove_member")) == 2


async def test_sweeps_drain_in_batches_and_wake_the_outbox(db, now):
    shop = await make_shop(db, now)
    group_id, buyer_id = shop.group.id, shop.buyer.id
    await add_members(db, group_id, 12, now + 2 * DAY, first_uid=50_000)  # due a reminder
    await add_members(db, group_id, 7, now - 2 * DAY, first_uid=60_000)  # lapsed
    wakes: list[int] = []
    seen: list[datetime] = []

    async def reconcile(at: datetime) -> dict[str, int]:
        seen.append(at)
        return {"claimed": 0}

    sweeps = Sweeps(
        db,
        FakeClock(now),
        interval_seconds=60,
        reminder_days=3,
        grace_hours=24,
        batch=5,
        wake_outbox=lambda: wakes.append(1),
        reconcile=reconcile,
    )
    assert await sweeps.run_sweeps_once(now) == {
        "reconciled": {"claimed": 0},
        "removed": 7,
        "reminded": 12,
    }
    assert seen == [now]
    assert len(wakes) == 3 + 2  # one per batch that queued rows: 5+5+2 reminders, 5+2 removals
    assert await sweeps.run_sweeps_once(now) == {
        "reconciled": {"claimed": 0},
        "removed": 0,
        "reminded": 0,
    }
    assert len(await outbox(db, "remove_member")) == 7
    assert buyer_id is not None


async def test_scheduler_runs_the_sweeps(db, now):
    shop = await make_shop(db, now)
    await add_members(db, shop.group.id, 3, now - 2 * DAY, first_uid=70_000)
    woke = asyncio.Event()
    sweeps = Sweeps(
        db,
        FakeClock(now),
        interval_seconds=0.05,
        reminder_days=3,
        grace_hours=24,
        wake_outbox=woke.set,
    )
    sweeps.start()
    try:
        await asyncio.wait_for(woke.wait(), timeout=5)
    finally:
        await sweeps.shutdown()
    assert len(await outbox(db, "remove_member")) == 3


# --- two replicas on one PostgreSQL --------------------------------------------------------


async def add_members(
    db: Database, group_id: int, n: int, expires_at: datetime, *, first_uid: int
) -> None:
    """n buyers with a membership of the group ending at expires_at (bulk inserts)."""
    start = expires_at - 30 * DAY
    async with db.transaction() as s:
        await s.execute(
            insert(User),
            [
                {
                    "platform": "telegram",
                    "platform_user_id": str(first_uid + i),
                    "refund_policy": "revoke",
                    "created_at": start,
                }
                for i in range(n)
            ],
        )
        ids = (
            (
                await s.execute(
                    select(col(User.id)).where(
                        col(User.platform_user_id).in_([str(first_uid + i) for i in range(n)])
                    )
                )
            )
            .scalars()
            .all()
        )
        await s.execute(
            insert(Membership),
            [
                {
                    "user_id": uid,
                    "chat_group_id": group_id,
                    "status": "active",
                    "starts_at": start,
                    "expires_at": expires_at,
                    "auto_renew": False,
                    "updated_at": start,
                }
                for uid in ids
            ],
        )


async def test_two_replicas_remove_and_remind_each_member_exactly_once(db, db_url, now):
    if db.is_sqlite:
        pytest.skip("replicas share work through PostgreSQL's FOR UPDATE SKIP LOCKED")
    shop = await make_shop(db, now)
    await add_members(db, shop.group.id, 120, now - 2 * DAY, first_uid=100_000)  # lapsed
    await add_members(db, shop.group.id, 120, now + 1 * DAY, first_uid=200_000)  # remind
    replicas = [Database(*db_url) for _ in range(2)]
    try:
        sweeps = [
            Sweeps(r, FakeClock(now), interval_seconds=60, reminder_days=3, grace_hours=24, batch=7)
            for r in replicas
        ]
        # Each replica runs every sweep twice, all at the same time.
        results = await asyncio.gather(*(s.run_sweeps_once(now) for s in sweeps * 2))
    finally:
        for r in replicas:
            await r.dispose()
    assert sum(r["removed"] for r in results) == 120
    assert sum(r["reminded"] for r in results) == 120
    assert sum(1 for r in results if r["removed"]) >= 2  # the work really was shared
    async with db.session() as s:
        removals = (
            (
                await s.execute(
                    select(col(Outbox.payload)).where(col(Outbox.kind) == "remove_member")
                )
            )
            .scalars()
            .all()
        )
        reminders = (
            await s.execute(
                select(func.count()).select_from(Outbox).where(col(Outbox.kind) == "notify")
            )
        ).scalar_one()
        statuses = dict(
            (
                await s.execute(
                    select(col(Membership.status), func.count()).group_by(col(Membership.status))
                )
            ).all()
        )
    assert len(removals) == 120 and len({r["user_id"] for r in removals}) == 120
    assert reminders == 120 + 120  # one renew reminder and one access_ended notice each
    assert statuses == {"expired": 120, "active": 120}


async def test_two_running_schedulers_remove_each_member_once(db, db_url, now):
    if db.is_sqlite:
        pytest.skip("replicas share work through PostgreSQL's FOR UPDATE SKIP LOCKED")
    shop = await make_shop(db, now)
    await add_members(db, shop.group.id, 150, now - 2 * DAY, first_uid=300_000)
    replicas = [Database(*db_url) for _ in range(2)]
    sweeps = [
        Sweeps(r, FakeClock(now), interval_seconds=0.02, reminder_days=3, grace_hours=24, batch=4)
        for r in replicas
    ]
    try:
        for s in sweeps:
            s.start()  # the APScheduler jobs, as `gatepass run` starts them on each replica
        for _ in range(500):
            async with db.session() as s:
                left = (
                    await s.execute(
                        select(func.count())
                        .select_from(Membership)
                        .where(col(Membership.status) == "active")
                    )
                ).scalar_one()
            if left == 0:
                break
            await asyncio.sleep(0.02)
    finally:
        for s in sweeps:
            await s.shutdown()
        for r in replicas:
            await r.dispose()
    async with db.session() as s:
        removals = (
            (
                await s.execute(
                    select(col(Outbox.payload)).where(col(Outbox.kind) == "remove_member")
                )
            )
            .scalars()
            .all()
        )
    assert len(removals) == 150 and len({r["user_id"] for r in removals}) == 150


def test_catalog_texts_render_in_both_languages():
    from bot.i18n import t

    until = "2026-12-21T12:00:00+00:00"
    link = "https://t.me/gatepass_bot?start=g_7"
    for lang in ("en", "zh"):
        text = t("renew_reminder", lang, group="VIP", group_id=7, until=until, buy_link=link)
        assert "VIP" in text and "2026-12-21 12:00 UTC" in text and link in text
        assert link in t("access_ended", lang, group="VIP", group_id=7, buy_link=link)
        assert "VIP" in t("btn_renew", lang, group="VIP")


# --- through the outbox to the Telegram Bot API emulator -----------------------------------


async def test_reminder_and_removal_reach_telegram(db, now):
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    from bot.gateway import RateLimiter, TelegramGateway
    from sandbox.telegram import EmulatorClient, TelegramEmulator
    from scheduler.outbox import OutboxWorker

    shop = await make_shop(db, now)
    chat, buyer = int(shop.group.chat_id), int(shop.buyer.platform_user_id)
    emulator = TelegramEmulator(bot_username="gatepass_bot")
    base_url = await emulator.start()
    tg = EmulatorClient(base_url)
    bot = Bot("4242:lapse-test", session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))
    try:
        await tg.create_bot("4242:lapse-test", username="gatepass_bot")
        await tg.create_user(int(shop.owner.platform_user_id), "Owner")
        await tg.create_user(buyer, "Buyer")
        await tg.send_text(buyer, "/start")
        await tg.create_chat(chat, creator_id=int(shop.owner.platform_user_id), title="Group 1")
        await tg.promote(chat, 4242)
        await tg.add_member(chat, buyer)
        m = await grant(db, shop, now)
        clock = FakeClock(now)
        gateway = TelegramGateway(bot, "gatepass_bot", clock, RateLimiter(1000, 6000))
        worker = OutboxWorker(db, {"telegram": gateway}, clock, invite_ttl=timedelta(hours=1))
        async with db.transaction() as s:  # the invite was delivered long ago
            for row in (await s.execute(select(Outbox))).scalars():
                row.status = "done"
            s.add(Invite(membership_id=m.id, link="https://t.me/+neverused", created_at=now))

        clock.t = now + 28 * DAY
        assert await remind(db, clock.t) == 1
        await worker.drain()
        reminder = await tg.wait_for_message(buyer, lambda msg: "ends on" in (msg.text or ""))
        assert reminder.button_urls == [f"https://t.me/gatepass_bot?start=g_{shop.group.id}"]
        assert reminder.buttons[0]["text"] == f"Renew {shop.group.title}"

        clock.t = now + 32 * DAY
        assert await remove(db, clock.t) == 1
        await worker.drain()
        assert await tg.member_status(chat, buyer) == "left"  # banned, then unbanned
        notice = await tg.wait_for_message(buyer, lambda msg: "has ended" in (msg.text or ""))
        assert f"https://t.me/gatepass_bot?start=g_{shop.group.id}" in notice.text
        methods = [c["method"] for c in await tg.calls()]
        assert methods.count("banChatMember") == 1 and methods.count("unbanChatMember") == 1
        assert methods.count("revokeChatInviteLink") == 1
        assert {r.status for r in await outbox(db)} == {"done"}
    finally:
        await bot.session.close()
        await tg.close()
        await emulator.stop()
