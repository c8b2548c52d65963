"""Edges of WeChat room access found in review: access that ends while the buyer is being
added to the room; an owner's /grant and /revoke naming a buyer by their account on the
other platform (linked, or with the access parked there); a linked owner's refund policy.
Driven through the services the bot and the workers call, with recording gateways at the
chat edge (as tests/unit/test_wechat_rules.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from billing.events import EventKind
from billing.ingest import process_notice
from membership.admin import UserRef, grant_access, revoke_access
from membership.catalog import add_plan
from membership.delivery import DeliveryContext, deliver_invite
from membership.errors import RuleError
from membership.gateway import AddOutcome
from membership.policy import set_refund_policy
from storage.db import Database
from storage.models import ChatGroup, Outbox, User
from storage.money import Money
from tests.unit.test_wechat_rules import (
    ROOM,
    Room,
    _event,
    _get,
    _notices,
    bundle,
    clear_outbox,
    link,
    memberships,
    outbox,
    pay,
)


class RevokedWhileAdding(Room):
    """The owner's /revoke commits while the add is on its way to WeChat, and its removal
    runs first: the buyer is not in the room yet, so that removal removes no one."""

    def __init__(
        self, db: Database, owner: User, room: ChatGroup, outcome: AddOutcome, now: datetime
    ) -> None:
        super().__init__(outcome)
        self.db, self.owner, self.room, self.now = db, owner, room, now

    async def add_member(self, chat_id: str, user_id: str) -> AddOutcome:
        async with self.db.transaction() as s:
            await revoke_access(
                s,
                await _get(s, User, self.owner.id),
                await _get(s, ChatGroup, self.room.id),
                UserRef(platform_user_id=user_id),
                self.now,
            )
        async with self.db.transaction() as s:  # the removal ran: nobody there to remove
            for row in (
                await s.execute(select(Outbox).where(col(Outbox.kind) == "remove_member"))
            ).scalars():
                await s.delete(row)
        return await super().add_member(chat_id, user_id)


@pytest.mark.parametrize("outcome", [AddOutcome.ADDED, AddOutcome.ALREADY_MEMBER])
async def test_access_ended_during_the_add_removes_the_buyer_again(
    db: Database, now: datetime, outcome: AddOutcome
):
    b = await bundle(db, now)
    await link(db, b.buyer, b.buyer_wx, now)
    await pay(db, b, now)
    (row,) = [r for r in await outbox(db, "deliver_invite") if r.platform == "wechat"]
    await clear_outbox(db)
    gw = RevokedWhileAdding(db, b.owner_wx, b.room, outcome, now)
    ctx = DeliveryContext(db=db, gateway=gw, now=now, invite_ttl=timedelta(hours=24))
    await deliver_invite(ctx, row.payload)
    assert gw.added == [(ROOM, "wxid_buyer")]
    removals = [(r.platform, r.payload) for r in await outbox(db, "remove_member")]
    assert removals == [("wechat", {"chat_id": ROOM, "user_id": "wxid_buyer"})]
    # No "you were added" for access that is gone: only the revoke's own notice.
    assert [n[2] for n in _notices(await outbox(db))] == ["access_revoked_owner"]


async def test_the_owner_revokes_parked_room_access_and_a_later_link_delivers_nothing(
    db: Database, now: datetime
):
    """Bought on Telegram before linking: the room's access is parked on the Telegram buyer
    and /members lists it under "2000". The owner's /revoke of "2000" in the room ends it
    (nothing to remove: they never were in the room); the buyer's /link then adds no one."""
    b = await bundle(db, now)
    await pay(db, b, now)
    await clear_outbox(db)
    async with db.transaction() as s:
        target, m = await revoke_access(
            s,
            await _get(s, User, b.owner_wx.id),
            await _get(s, ChatGroup, b.room.id),
            UserRef(platform_user_id="2000"),
            now,
        )
    assert (target.id, m.status) == (b.buyer.id, "revoked")
    assert await outbox(db, "remove_member") == []
    assert _notices(await outbox(db)) == [
        ("telegram", "2000", "access_revoked_owner", {"group": "WX Room", "group_id": b.room.id})
    ]
    await clear_outbox(db)
    assert await link(db, b.buyer, b.buyer_wx, now + timedelta(hours=1)) == 1
    assert await outbox(db, "deliver_invite") == []
    ms = await memberships(db)
    assert (ms[b.room.id].user_id, ms[b.room.id].status) == (b.buyer_wx.id, "revoked")
    assert ms[b.group.id].status == "active"  # the owner ended the room only


# -- a linked owner names a buyer by their other account ----------------------------------


async def _grant(db: Database, actor: User, group: ChatGroup, ref: UserRef, now: datetime):
    async with db.transaction() as s:
        return await grant_access(
            s, await _get(s, User, actor.id), await _get(s, ChatGroup, group.id), ref, 30, now
        )


async def _users(db: Database) -> set[tuple[str, str]]:
    async with db.session() as s:
        return {(u.platform, u.platform_user_id) for u in (await s.execute(select(User))).scalars()}


async def test_a_room_granted_by_a_buyers_telegram_id_goes_to_their_linked_wechat(
    db: Database, now: datetime
):
    """The owner, on Telegram, grants the WeChat room to "2000" (the buyer's Telegram id):
    the access is the buyer's linked WeChat account's, not a made-up WeChat contact "2000"
    nobody can ever be; /revoke by the same id ends it there."""
    b = await bundle(db, now)
    await link(db, b.buyer, b.buyer_wx, now)
    before = await _users(db)
    done = await _grant(db, b.owner, b.room, UserRef(platform_user_id="2000"), now)
    assert (done.user.id, done.membership.user_id, done.new_user) == (
        b.buyer_wx.id,
        b.buyer_wx.id,
        False,
    )
    assert await _users(db) == before
    (row,) = await outbox(db, "deliver_invite")
    assert (row.platform, row.payload["chat_id"]) == ("wechat", ROOM)
    async with db.transaction() as s:
        target, m = await revoke_access(
            s,
            await _get(s, User, b.owner.id),
            await _get(s, ChatGroup, b.room.id),
            UserRef(platform_user_id="2000"),
            now,
        )
    assert (target.id, m.status) == (b.buyer_wx.id, "revoked")
    assert [r.payload for r in await outbox(db, "remove_member")] == [
        {"chat_id": ROOM, "user_id": "wxid_buyer"}
    ]


async def test_a_room_granted_by_an_unlinked_telegram_id_waits_parked_for_link(
    db: Database, now: datetime
):
    b = await bundle(db, now)
    done = await _grant(db, b.owner, b.room, UserRef(platform_user_id="2000"), now)
    assert done.membership.user_id == b.buyer.id  # parked: delivered as a request to /link
    assert await link(db, b.buyer, b.buyer_wx, now) == 1
    ms = await memberships(db)
    assert (ms[b.room.id].user_id, ms[b.room.id].status) == (b.buyer_wx.id, "active")


async def test_no_telegram_user_is_made_up_from_a_wechat_id(db: Database, now: datetime):
    """On WeChat, /grant wxid_nobody <Telegram group>: nobody we know, and no Telegram id
    at all. Refused; no Telegram user "wxid_nobody" holding access."""
    b = await bundle(db, now)
    before = await _users(db)
    with pytest.raises(RuleError) as e:
        await _grant(db, b.owner_wx, b.group, UserRef(platform_user_id="wxid_nobody"), now)
    assert e.value.key == "user_unknown"
    assert await _users(db) == before
    assert await outbox(db, "deliver_invite") == []


# -- a linked owner's refund policy ------------------------------------------------------------


async def test_a_refund_of_a_plan_made_on_wechat_follows_the_policy_set_on_telegram(
    db: Database, now: datetime
):
    """The owner chose /refundpolicy keep on Telegram (WeChat has no such command) and sold
    a room plan made from WeChat: a refund of it keeps the buyer's access to its end, as
    for their Telegram plans, instead of ending it."""
    b = await bundle(db, now)
    await link(db, b.buyer, b.buyer_wx, now)
    async with db.transaction() as s:
        await set_refund_policy(s, await _get(s, User, b.owner.id), "keep", now)
        room_plan = await add_plan(
            s,
            await _get(s, User, b.owner_wx.id),
            [await _get(s, ChatGroup, b.room.id)],
            30,
            [Money(499, "USD")],
            "Room",
            now,
        )
    order_no = await pay(db, replace(b, plan=room_plan), now)
    refund = _event(
        order_no, EventKind.REFUNDED, "r", reversal_id="rf_1", reversal_amount_minor=499
    )
    assert str(await process_notice(db, "fakepay", refund, now + timedelta(days=1))) == "kept"
    ms = await memberships(db)
    assert (ms[b.room.id].user_id, ms[b.room.id].status) == (b.buyer_wx.id, "active")
    assert await outbox(db, "remove_member") == []
