"""The membership rules across platforms: a plan bundling a Telegram group and a WeChat room
grants each to the buyer's account on its platform (the linked one), or parks it until they
/link; one lapse or refund ends both, a renewal extends both; a WeChat room is joined by
add_member; the join guard reports or removes. Driven through the services the bot and the
workers call, with recording gateways at the chat edge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from billing.events import EventKind, PaymentEvent, WebhookNotice
from billing.ingest import process_notice
from bot.i18n import t
from membership.catalog import add_plan, register_group
from membership.delivery import DeliveryContext, deliver_invite
from membership.errors import RuleError
from membership.gateway import AddOutcome
from membership.grants import grant_days
from membership.joins import JoinOutcome, on_member_joined
from membership.lapse import remove_lapsed
from membership.links import LinkOutcome, bind_link, issue_link_code
from membership.policy import set_guard, whitelist
from storage.db import Database
from storage.models import AuditLog, ChatGroup, Invite, Membership, Outbox, Plan, User
from storage.money import Money
from storage.queries import get_or_create_user
from tests.factories import Shop, make_order

ROOM = "4242@chatroom"
TG_GROUP = "-1001"


@dataclass
class Bundle:
    owner: User
    owner_wx: User
    buyer: User
    buyer_wx: User
    group: ChatGroup
    room: ChatGroup
    plan: Plan


async def bundle(db: Database, now: datetime, *, duration_days: int | None = 30) -> Bundle:
    """An owner with a Telegram group and a WeChat room (accounts linked) selling both in
    one plan; a buyer with an account on each platform, not linked."""
    async with db.transaction() as s:
        owner = await get_or_create_user(s, "telegram", "1000", now, username="owner")
        owner_wx = await get_or_create_user(s, "wechat", "wxid_owner", now, username="Owner")
        buyer = await get_or_create_user(s, "telegram", "2000", now, username="buyer")
        buyer_wx = await get_or_create_user(s, "wechat", "wxid_buyer", now, username="Buyer")
        group, _ = await register_group(
            s, owner, "telegram", TG_GROUP, "TG Group", now, invite_mode="single_use"
        )
        room, _ = await register_group(
            s, owner_wx, "wechat", ROOM, "WX Room", now, invite_mode="add_member"
        )
        room.guard = "report"
        plan = await add_plan(
            s, owner, [group, room], duration_days, [Money(499, "USD")], "Both", now
        )
    await link(db, owner, owner_wx, now)
    return Bundle(owner, owner_wx, buyer, buyer_wx, group, room, plan)


async def link(db: Database, maker: User, sender: User, now: datetime) -> int:
    async with db.transaction() as s:
        code = (await issue_link_code(s, await _get(s, User, maker.id), now)).code
    async with db.transaction() as s:
        result = await bind_link(s, await _get(s, User, sender.id), code, now)
    assert result.outcome is LinkOutcome.BOUND
    return result.moved


async def _get(s: Any, model: Any, id_: Any) -> Any:
    row = await s.get(model, id_, populate_existing=True)
    assert row is not None
    return row


def _event(order_no: str, kind: EventKind, n: str, **kw: Any) -> WebhookNotice:
    e = PaymentEvent(
        provider="fakepay",
        event_id=f"{kind}:{order_no}:{n}",
        event_type=str(kind),
        kind=kind,
        order_no=order_no,
        amount_minor=499,
        currency="USD",
        provider_payment_id=kw.pop("payment_id", f"fpch_{order_no}"),
        **kw,
    )
    return WebhookNotice(e.event_id, e.event_type, e)


async def pay(db: Database, b: Bundle, now: datetime) -> str:
    order = await make_order(db, Shop(b.owner, b.buyer, b.group, b.plan), now, provider="fakepay")
    assert (
        str(await process_notice(db, "fakepay", _event(order.order_no, EventKind.PAID, "1"), now))
        == "granted"
    )
    return order.order_no


async def memberships(db: Database) -> dict[int, Membership]:
    """By group id."""
    async with db.session() as s:
        return {m.chat_group_id: m for m in (await s.execute(select(Membership))).scalars()}


async def outbox(db: Database, kind: str | None = None) -> list[Outbox]:
    async with db.session() as s:
        q = select(Outbox).order_by(col(Outbox.id))
        if kind:
            q = q.where(col(Outbox.kind) == kind)
        return list((await s.execute(q)).scalars())


async def clear_outbox(db: Database) -> None:
    async with db.transaction() as s:
        for row in (await s.execute(select(Outbox))).scalars():
            await s.delete(row)


class Room:
    """A recording WeChat gateway: add_member answers `outcome`; every other chat call fails
    the test (none is expected)."""

    platform = "wechat"

    def __init__(self, outcome: AddOutcome = AddOutcome.ADDED) -> None:
        self.outcome = outcome
        self.added: list[tuple[str, str]] = []

    def check_budget(self, chat_id: str) -> None:
        return None

    async def add_member(self, chat_id: str, user_id: str) -> AddOutcome:
        self.added.append((chat_id, user_id))
        return self.outcome

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected chat call {name}")


class NoChat(Room):
    """A gateway for deliveries that must make no chat call at all."""

    platform = "telegram"

    async def add_member(self, chat_id: str, user_id: str) -> AddOutcome:
        raise AssertionError("no chat call expected")


async def deliver(db: Database, gw: Any, row: Outbox, now: datetime) -> None:
    assert row.kind == "deliver_invite" and row.platform == gw.platform
    ctx = DeliveryContext(db=db, gateway=gw, now=now, invite_ttl=timedelta(hours=24))
    await deliver_invite(ctx, row.payload)


def _notices(rows: list[Outbox]) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (r.platform, r.payload["user_id"], r.payload["key"], r.payload["params"])
        for r in rows
        if r.kind == "notify"
    ]


# -- bundles ----------------------------------------------------------------------------------


async def test_a_linked_buyer_gets_each_group_on_its_own_platform(db: Database, now: datetime):
    b = await bundle(db, now)
    await link(db, b.buyer, b.buyer_wx, now)
    await pay(db, b, now)
    ms = await memberships(db)
    assert ms[b.group.id].user_id == b.buyer.id
    assert ms[b.room.id].user_id == b.buyer_wx.id
    assert ms[b.group.id].expires_at == ms[b.room.id].expires_at == now + timedelta(days=30)
    rows = await outbox(db, "deliver_invite")
    assert sorted((r.platform, r.payload["chat_id"]) for r in rows) == [
        ("telegram", TG_GROUP),
        ("wechat", ROOM),
    ]
    room_row = next(r for r in rows if r.platform == "wechat")
    gw = Room()
    await deliver(db, gw, room_row, now)
    assert gw.added == [(ROOM, "wxid_buyer")]
    assert _notices(await outbox(db, "notify")) == [
        (
            "wechat",
            "wxid_buyer",
            "room_added",
            {"group": "WX Room", "until": ms[b.room.id].expires_at.isoformat()},
        )
    ]


async def test_parked_access_asks_to_link_and_binding_moves_and_delivers_it(
    db: Database, now: datetime
):
    b = await bundle(db, now)
    await pay(db, b, now)
    ms = await memberships(db)
    # No link yet: both are on the Telegram buyer; the room's is parked there.
    assert ms[b.group.id].user_id == ms[b.room.id].user_id == b.buyer.id
    parked = next(r for r in await outbox(db, "deliver_invite") if "chat_id" not in r.payload)
    assert parked.platform == "telegram" and parked.payload["membership_id"] == ms[b.room.id].id
    await clear_outbox(db)
    await deliver(db, NoChat(), parked, now)  # no chat call: a request to /link instead
    (notice,) = _notices(await outbox(db))
    assert notice == ("telegram", "2000", "link_needed", {"group": "WX Room", "platform": "wechat"})
    text = t("link_needed", "en", **notice[3])
    assert "WX Room on WeChat" in text and "/link" in text
    assert "微信" in t("link_needed", "zh", **notice[3])
    await clear_outbox(db)
    # The buyer links from WeChat with a code made on Telegram: the room's access moves.
    assert await link(db, b.buyer, b.buyer_wx, now + timedelta(hours=1)) == 1
    ms = await memberships(db)
    assert ms[b.room.id].user_id == b.buyer_wx.id and ms[b.group.id].user_id == b.buyer.id
    assert ms[b.room.id].expires_at == now + timedelta(days=30)
    (row,) = await outbox(db, "deliver_invite")
    assert row.platform == "wechat" and row.payload["chat_id"] == ROOM
    gw = Room()
    await deliver(db, gw, row, now + timedelta(hours=1))
    assert gw.added == [(ROOM, "wxid_buyer")]
    assert [n[2] for n in _notices(await outbox(db))] == ["room_added"]
    # A renewal now extends both, each on its own account.
    order_no = (await outbox_orders(db))[0]
    until = now + timedelta(days=90)
    renewed = _event(order_no, EventKind.RENEWED, "2", payment_id="fpch_2", period_end=until)
    assert str(await process_notice(db, "fakepay", renewed, now + timedelta(days=29))) == "renewed"
    ms = await memberships(db)
    assert ms[b.group.id].expires_at == ms[b.room.id].expires_at == until


async def outbox_orders(db: Database) -> list[str]:
    from storage.models import Order

    async with db.session() as s:
        return list((await s.execute(select(col(Order.order_no)))).scalars())


async def test_a_parked_delivery_overtaken_by_a_link_is_done_by_the_move(
    db: Database, now: datetime
):
    """Paid, then linked before the parked delivery ran: that (Telegram) row finds the access
    on the WeChat account and leaves it to the delivery the move queued."""
    b = await bundle(db, now)
    await pay(db, b, now)
    parked = next(r for r in await outbox(db, "deliver_invite") if "chat_id" not in r.payload)
    assert await link(db, b.buyer_wx, b.buyer, now) == 1
    await clear_outbox(db)
    await deliver(db, NoChat(), parked, now)
    assert await outbox(db) == []


@pytest.mark.parametrize(
    ("held_days", "parked_days", "want_days"),
    [(5, 30, 30), (60, 30, 60), (None, 30, None), (5, None, None)],
)
async def test_binding_merges_parked_access_into_the_linked_accounts_own_lifetime_wins(
    db: Database,
    now: datetime,
    held_days: int | None,
    parked_days: int | None,
    want_days: int | None,
):
    b = await bundle(db, now, duration_days=parked_days)
    async with db.transaction() as s:
        held = await grant_days(
            s,
            await _get(s, User, b.buyer_wx.id),
            await _get(s, ChatGroup, b.room.id),
            held_days,
            now,
            actor="test",
            reason="test",
        )
    await pay(db, b, now)
    await clear_outbox(db)
    assert await link(db, b.buyer_wx, b.buyer, now) == 1
    async with db.session() as s:
        rows = list(
            (
                await s.execute(
                    select(Membership).where(col(Membership.chat_group_id) == b.room.id)
                )
            ).scalars()
        )
    assert [(m.id, m.user_id, m.status) for m in rows] == [(held.id, b.buyer_wx.id, "active")]
    want = None if want_days is None else now + timedelta(days=want_days)
    assert rows[0].expires_at == want
    # It was in the room already: no removal, no second add.
    assert await outbox(db, "remove_member") == [] and await outbox(db, "deliver_invite") == []


async def test_one_lapse_ends_both_and_removes_from_both_chats(db: Database, now: datetime):
    b = await bundle(db, now)
    await link(db, b.buyer, b.buyer_wx, now)
    await pay(db, b, now)
    await clear_outbox(db)
    later = now + timedelta(days=31)
    assert await remove_lapsed(db, later, grace_hours=0, limit=10) == 2
    ms = await memberships(db)
    assert {m.status for m in ms.values()} == {"expired"}
    assert sorted(
        (r.platform, r.payload["chat_id"], r.payload["user_id"])
        for r in await outbox(db, "remove_member")
    ) == [("telegram", TG_GROUP, "2000"), ("wechat", ROOM, "wxid_buyer")]


async def test_a_parked_lapse_removes_only_where_the_buyer_was(db: Database, now: datetime):
    b = await bundle(db, now)
    await pay(db, b, now)
    await clear_outbox(db)
    assert await remove_lapsed(db, now + timedelta(days=31), grace_hours=0, limit=10) == 2
    assert [(r.platform, r.payload["chat_id"]) for r in await outbox(db, "remove_member")] == [
        ("telegram", TG_GROUP)
    ]
    assert await outbox(db, "revoke_invite") == []


async def test_a_refund_revokes_both(db: Database, now: datetime):
    b = await bundle(db, now)
    await link(db, b.buyer, b.buyer_wx, now)
    order_no = await pay(db, b, now)
    await clear_outbox(db)
    refund = _event(
        order_no, EventKind.REFUNDED, "r", reversal_id="rf_1", reversal_amount_minor=499
    )
    await process_notice(db, "fakepay", refund, now + timedelta(days=1))
    ms = await memberships(db)
    assert {m.status for m in ms.values()} == {"revoked"}
    # The room's access was the linked WeChat account's: that contact leaves the room.
    assert ms[b.room.id].user_id == b.buyer_wx.id
    assert sorted(
        (r.platform, r.payload["chat_id"], r.payload["user_id"])
        for r in await outbox(db, "remove_member")
    ) == [("telegram", TG_GROUP, "2000"), ("wechat", ROOM, "wxid_buyer")]


# -- add_member delivery ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "paid", "key"),
    [
        (AddOutcome.ADDED, True, "room_added"),
        (AddOutcome.ALREADY_MEMBER, True, "room_added"),
        (AddOutcome.INVITED, True, "room_invited"),
        (AddOutcome.ADDED, False, "room_added_given"),
        (AddOutcome.INVITED, False, "room_invited_given"),
    ],
)
async def test_a_room_delivery_adds_the_buyer_and_says_how(
    db: Database, now: datetime, outcome: AddOutcome, paid: bool, key: str
):
    b = await bundle(db, now)
    if paid:
        await link(db, b.buyer, b.buyer_wx, now)
        await pay(db, b, now)
    else:
        async with db.transaction() as s:
            await grant_days(
                s,
                await _get(s, User, b.buyer_wx.id),
                await _get(s, ChatGroup, b.room.id),
                30,
                now,
                actor="test",
                reason="test",
            )
    (row,) = [r for r in await outbox(db, "deliver_invite") if r.platform == "wechat"]
    await clear_outbox(db)
    gw = Room(outcome)
    await deliver(db, gw, row, now)
    assert gw.added == [(ROOM, "wxid_buyer")]
    until = (now + timedelta(days=30)).isoformat()
    want = [("wechat", "wxid_buyer", key, {"group": "WX Room", "until": until})]
    if outcome is AddOutcome.INVITED:
        # The room's owner is told on their own platform (the room's owner is the WeChat one).
        want.append(
            (
                "wechat",
                "wxid_owner",
                "owner_room_invited",
                {"group": "WX Room", "buyer": "@Buyer (wxid_buyer)"},
            )
        )
    assert _notices(await outbox(db)) == want
    async with db.session() as s:
        assert (await s.execute(select(Invite))).first() is None  # no link on WeChat
    for _platform, _user, k, params in want:
        assert "{" not in t(k, "zh", **params) and "{" not in t(k, "en", **params)


# -- the join guard ---------------------------------------------------------------------------


async def join(db: Database, platform: str, chat: str, who: str, now: datetime) -> JoinOutcome:
    async with db.transaction() as s:
        return await on_member_joined(s, platform, chat, who, None, now)


async def test_the_guard_reports_a_wechat_intruder_by_default_and_removes_on_request(
    db: Database, now: datetime
):
    b = await bundle(db, now)
    await clear_outbox(db)
    assert await join(db, "wechat", ROOM, "wxid_stranger", now) is JoinOutcome.REPORTED
    assert _notices(await outbox(db)) == [
        (
            "wechat",
            "wxid_owner",
            "owner_intruder",
            {"group": "WX Room", "who": "wxid_stranger", "group_id": b.room.id},
        )
    ]
    assert await outbox(db, "remove_member") == []
    await clear_outbox(db)
    async with db.transaction() as s:
        owner = await _get(s, User, b.owner.id)  # the linked Telegram account sets it
        assert await set_guard(s, owner, await _get(s, ChatGroup, b.room.id), " Remove ", now)
    assert await join(db, "wechat", ROOM, "wxid_stranger", now) is JoinOutcome.REMOVED
    rows = await outbox(db)
    assert [(r.kind, r.platform, r.payload.get("user_id")) for r in rows] == [
        ("remove_member", "wechat", "wxid_stranger"),
        # the owner hears it; the intruder is not the bot's contact and is not messaged
        ("notify", "wechat", "wxid_owner"),
    ]
    assert rows[1].payload["key"] == "owner_intruder_removed"
    async with db.session() as s:
        actions = [
            a.action
            for a in (await s.execute(select(AuditLog).order_by(col(AuditLog.id)))).scalars()
        ]
    assert actions[-3:] == ["member.report_unpaid", "group.guard", "member.remove_unpaid"]


async def test_members_the_owner_and_whitelisted_stay_in_a_room(db: Database, now: datetime):
    b = await bundle(db, now)
    await link(db, b.buyer, b.buyer_wx, now)
    await pay(db, b, now)
    async with db.transaction() as s:
        await whitelist(
            s, b.owner_wx, await _get(s, ChatGroup, b.room.id), "wxid_staff", now, add=True
        )
    await clear_outbox(db)
    assert await join(db, "wechat", ROOM, "wxid_buyer", now) is JoinOutcome.MEMBER
    assert await join(db, "wechat", ROOM, "wxid_owner", now) is JoinOutcome.WHITELISTED
    assert await join(db, "wechat", ROOM, "wxid_staff", now) is JoinOutcome.WHITELISTED
    assert await join(db, "wechat", "other@chatroom", "wxid_x", now) is JoinOutcome.UNKNOWN_GROUP
    # A lapsed member is an intruder again (reported here).
    later = now + timedelta(days=31)
    assert await join(db, "wechat", ROOM, "wxid_buyer", later) is JoinOutcome.REPORTED
    assert [r.payload["params"]["who"] for r in await outbox(db)] == ["@Buyer (wxid_buyer)"]


async def test_a_telegram_intruder_is_removed_and_told_as_before(db: Database, now: datetime):
    b = await bundle(db, now)
    await clear_outbox(db)
    assert await join(db, "telegram", TG_GROUP, "3003", now) is JoinOutcome.REMOVED
    assert [(r.kind, r.payload["user_id"], r.payload.get("key")) for r in await outbox(db)] == [
        ("remove_member", "3003", None),
        ("notify", "3003", "removed_no_access"),
    ]
    assert b.group.guard == "remove"


async def test_set_guard_refuses_anything_but_report_or_remove(db: Database, now: datetime):
    b = await bundle(db, now)
    async with db.transaction() as s:
        room = await _get(s, ChatGroup, b.room.id)
        for bad in ("", "kick", "reportx"):
            with pytest.raises(RuleError) as e:
                await set_guard(s, b.owner_wx, room, bad, now)
            assert e.value.key == "guard_bad"
        assert not await set_guard(s, b.owner_wx, room, "report", now)  # as it was
    async with db.session() as s:
        assert (await _get(s, ChatGroup, b.room.id)).guard == "report"
        assert (
            await s.execute(select(AuditLog).where(col(AuditLog.action) == "group.guard"))
        ).first() is None
    assert "kick" in t("guard_bad", "en", guard="kick") and "/guard" in t(
        "guard_bad", "zh", guard="kick"
    )
