"""Invites: one live link per membership, reused on redelivery; a single-use link spent by
someone else is revoked and its owner re-invited; applied Telegram updates are pruned."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from membership.delivery import DeliveryContext, deliver_invite
from membership.grants import grant_days
from membership.invites import LinkUse, note_link_use, usable_invite
from membership.joins import JoinOutcome, on_member_joined
from storage.db import Database
from storage.models import Invite, Membership, Outbox, TelegramUpdate
from storage.updates import UPDATE_RETENTION, claim_update, prune_updates
from tests.factories import Shop, make_shop

STRANGER = "3000"


class LinkMaker:
    platform = "telegram"

    def __init__(self) -> None:
        self.made: list[str] = []

    def check_budget(self, chat_id: str) -> None:
        return None

    async def create_invite(
        self, chat_id: str, *, name: str, join_request: bool, expire_at: datetime | None
    ) -> str:
        self.made.append(f"https://t.me/+link{len(self.made) + 1}")
        return self.made[-1]


async def _member(db: Database, now: datetime, mode: str) -> tuple[Shop, Membership]:
    shop = await make_shop(db, now, invite_mode=mode)
    async with db.transaction() as s:
        m = await grant_days(s, shop.buyer, shop.group, 30, now, actor="test", reason="test")
    return shop, m


async def _outbox(db: Database) -> list[Outbox]:
    async with db.session() as s:
        return list((await s.execute(select(Outbox).order_by(col(Outbox.id)))).scalars())


async def _invites(db: Database) -> list[Invite]:
    async with db.session() as s:
        return list((await s.execute(select(Invite).order_by(col(Invite.id)))).scalars())


async def _deliver(db: Database, gw: LinkMaker, m: Membership, now: datetime) -> None:
    ctx = DeliveryContext(
        db=db,
        gateway=gw,
        now=now,
        invite_ttl=timedelta(hours=24),
    )
    await deliver_invite(ctx, {"membership_id": m.id})


async def test_a_delivery_run_again_sends_the_same_link(db: Database, now: datetime):
    _shop, m = await _member(db, now, "single_use")
    gw = LinkMaker()
    await _deliver(db, gw, m, now)
    await _deliver(db, gw, m, now + timedelta(minutes=1))  # a redelivered outbox row
    assert gw.made == ["https://t.me/+link1"]
    assert len(await _invites(db)) == 1
    notes = [r.payload["params"]["link"] for r in await _outbox(db) if r.kind == "notify"]
    assert notes[-2:] == ["https://t.me/+link1", "https://t.me/+link1"]


async def test_a_used_revoked_or_expiring_link_is_not_reused(db: Database, now: datetime):
    _shop, m = await _member(db, now, "single_use")
    gw = LinkMaker()
    await _deliver(db, gw, m, now)
    async with db.transaction() as s:
        inv = (await s.execute(select(Invite))).scalar_one()
        inv.used_by = "2000"
    await _deliver(db, gw, m, now)
    async with db.transaction() as s:
        newest = (await s.execute(select(Invite).order_by(col(Invite.id).desc()))).scalars().first()
        newest.revoked = True
    await _deliver(db, gw, m, now)
    # The third link is 24 h old a minute before it ends: too late to send.
    await _deliver(db, gw, m, now + timedelta(hours=24) - timedelta(minutes=1))
    assert gw.made == [f"https://t.me/+link{i}" for i in (1, 2, 3, 4)]
    async with db.session() as s:
        assert (await usable_invite(s, m.id, now)).link == "https://t.me/+link4"


async def _with_link(db: Database, now: datetime, mode: str) -> tuple[Shop, Membership, str]:
    shop, m = await _member(db, now, mode)
    await _deliver(db, LinkMaker(), m, now)
    return shop, m, "https://t.me/+link1"


async def test_a_stranger_using_a_single_use_link_burns_it_and_the_buyer_is_reinvited(
    db: Database, now: datetime
):
    shop, m, link = await _with_link(db, now, "single_use")
    before = len(await _outbox(db))
    async with db.transaction() as s:
        got = await on_member_joined(s, "telegram", shop.group.chat_id, STRANGER, link, now)
    assert got == JoinOutcome.REMOVED
    (inv,) = await _invites(db)
    assert (inv.revoked, inv.used_by) == (True, STRANGER)
    new = [(r.kind, r.payload) for r in (await _outbox(db))[before:]]
    assert ("revoke_invite", {"chat_id": shop.group.chat_id, "link": link}) in new
    assert (
        "deliver_invite",
        {"membership_id": m.id, "chat_id": shop.group.chat_id, "replaced": True},
    ) in new
    assert [k for k, _ in new].count("remove_member") == 1
    # The same chat_member update again: nothing new is queued for the link.
    async with db.transaction() as s:
        assert await note_link_use(s, shop.group, None, STRANGER, link, now) == LinkUse.BURNED
    kinds = [r.kind for r in (await _outbox(db))[before + len(new) :]]
    assert "deliver_invite" not in kinds and "revoke_invite" not in kinds


async def test_the_buyers_own_join_marks_the_link_used(db: Database, now: datetime):
    shop, _m, link = await _with_link(db, now, "single_use")
    async with db.transaction() as s:
        got = await on_member_joined(
            s, "telegram", shop.group.chat_id, shop.buyer.platform_user_id, link, now
        )
    assert got == JoinOutcome.MEMBER
    (inv,) = await _invites(db)
    assert (inv.revoked, inv.used_by) == (False, shop.buyer.platform_user_id)


async def test_a_join_request_link_is_not_burned_by_a_strangers_join(db: Database, now: datetime):
    shop, _m, link = await _with_link(db, now, "join_request")
    async with db.transaction() as s:
        assert await note_link_use(s, shop.group, None, STRANGER, link, now) == LinkUse.NOT_OURS
    (inv,) = await _invites(db)
    assert (inv.revoked, inv.used_by) == (False, None)


async def test_applied_updates_are_claimed_once_and_pruned_after_the_window(
    db: Database, now: datetime
):
    old = now - UPDATE_RETENTION - timedelta(minutes=1)
    async with db.transaction() as s:
        assert await claim_update(s, 1, 100, old)
        assert await claim_update(s, 1, 101, now)
        assert await claim_update(s, 2, 100, now)  # another bot's update 100
    async with db.transaction() as s:
        assert not await claim_update(s, 1, 101, now)
    assert await prune_updates(db, now) == 1
    async with db.session() as s:
        left: list[Any] = list(
            (
                await s.execute(
                    select(col(TelegramUpdate.bot_id), col(TelegramUpdate.update_id)).order_by(
                        col(TelegramUpdate.bot_id)
                    )
                )
            ).all()
        )
    assert [tuple(r) for r in left] == [(1, 101), (2, 100)]


async def test_two_replicas_handling_one_update_apply_it_once(db: Database, now: datetime):
    """The second claim waits for the first transaction (PostgreSQL: the unique index;
    SQLite: the one connection) and then finds the update applied."""
    import asyncio

    async with db.transaction() as first:
        assert await claim_update(first, 7, 500, now)
        second = asyncio.create_task(_claim_in_own_transaction(db, now))
        await asyncio.sleep(0.2)
        assert not second.done()  # held until the first replica commits
    assert await asyncio.wait_for(second, timeout=10) is False


async def _claim_in_own_transaction(db: Database, now: datetime) -> bool:
    async with db.transaction() as s:
        return await claim_update(s, 7, 500, now)
