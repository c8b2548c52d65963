"""/link racing the money of a bundle on PostgreSQL: a bind that commits while a payment,
a renewal, a refund or an owner's /grant of the same buyer is open. Each case holds one
transaction open at the racy point, starts the other, and lets the first commit once the
second has finished or is waiting on a lock (pg_stat_activity says so): the interleaving is
forced, not hoped for. SQLite runs one writer at a time, so these are PostgreSQL cases."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from billing.events import EventKind
from billing.ingest import apply_notice, process_notice
from membership.admin import UserRef, grant_access
from membership.links import LinkOutcome, bind_link, issue_link_code
from storage.db import Database
from storage.models import ChatGroup, User
from tests.factories import Shop, make_order
from tests.unit.test_wechat_rules import Bundle, _event, _get, bundle, memberships, pay


@pytest.fixture(autouse=True)
def _postgresql_only(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("forcing two open transactions to interleave needs PostgreSQL row locks")


async def _waiting_on_lock(db: Database) -> bool:
    async with db.session() as s:
        n = (
            await s.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            )
        ).scalar_one()
    return int(n) > 0


async def _interleave(
    db: Database,
    first: Callable[[Any], Awaitable[Any]],
    second: Callable[[], Awaitable[Any]],
) -> tuple[Any, Any]:
    """Run `first` in a transaction left open, then `second`; commit `first` once `second`
    is done or blocked. Returns both results."""
    ran, release = asyncio.Event(), asyncio.Event()

    async def hold() -> Any:
        async with db.transaction() as s:
            result = await first(s)
            ran.set()
            await release.wait()
        return result

    holder: asyncio.Task[Any] = asyncio.create_task(hold())
    await asyncio.wait_for(ran.wait(), 10)
    racer: asyncio.Task[Any] = asyncio.create_task(second())
    deadline = asyncio.get_running_loop().time() + 10
    while not racer.done() and not await _waiting_on_lock(db):
        assert asyncio.get_running_loop().time() < deadline, "the racer neither ended nor waited"
        await asyncio.sleep(0.02)
    release.set()
    return await asyncio.wait_for(holder, 10), await asyncio.wait_for(racer, 10)


async def _code(db: Database, maker: User, now: datetime) -> str:
    async with db.transaction() as s:
        return (await issue_link_code(s, await _get(s, User, maker.id), now)).code


async def _bind(db: Database, sender: User, code: str, now: datetime) -> LinkOutcome:
    async with db.transaction() as s:
        return (await bind_link(s, await _get(s, User, sender.id), code, now)).outcome


async def _bind_in(s: Any, sender: User, code: str, now: datetime) -> LinkOutcome:
    return (await bind_link(s, await _get(s, User, sender.id), code, now)).outcome


async def _order(db: Database, b: Bundle, now: datetime) -> str:
    order = await make_order(db, Shop(b.owner, b.buyer, b.group, b.plan), now, provider="fakepay")
    return order.order_no


async def test_a_bind_while_the_payment_is_open_still_moves_the_room_to_wechat(
    db: Database, now: datetime
):
    """The payment read "no link" and parked the room on the Telegram buyer; the bind must
    not commit past it, or the room stays parked on a buyer who is linked (and /link only
    answers "already linked"): paid, and never let in."""
    b = await bundle(db, now)
    order_no = await _order(db, b, now)
    code = await _code(db, b.buyer, now)
    paid = _event(order_no, EventKind.PAID, "1")
    granted, bound = await _interleave(
        db,
        lambda s: apply_notice(s, "fakepay", paid, now),
        lambda: _bind(db, b.buyer_wx, code, now),
    )
    assert (str(granted), bound) == ("granted", LinkOutcome.BOUND)
    ms = await memberships(db)
    assert ms[b.room.id].user_id == b.buyer_wx.id and ms[b.room.id].status == "active"
    assert ms[b.group.id].user_id == b.buyer.id


async def test_a_refund_during_a_bind_ends_both_sides_of_the_bundle(db: Database, now: datetime):
    """The bind moved the parked room to the WeChat account and is about to commit; the
    refund must find it there, not look for it on the Telegram buyer and end only the
    Telegram group (a refunded buyer kept in the room)."""
    b = await bundle(db, now)
    order_no = await pay(db, b, now)
    later = now + timedelta(hours=1)
    code = await _code(db, b.buyer, later)
    refund = _event(
        order_no, EventKind.REFUNDED, "r", reversal_id="rf_1", reversal_amount_minor=499
    )
    bound, refunded = await _interleave(
        db,
        lambda s: _bind_in(s, b.buyer_wx, code, later),
        lambda: process_notice(db, "fakepay", refund, later),
    )
    assert (bound, str(refunded)) == (LinkOutcome.BOUND, "revoked")
    ms = await memberships(db)
    assert ms[b.room.id].user_id == b.buyer_wx.id
    assert {m.status for m in ms.values()} == {"revoked"}


async def test_a_renewal_during_a_bind_extends_the_moved_room(db: Database, now: datetime):
    b = await bundle(db, now)
    order_no = await pay(db, b, now)
    later, until = now + timedelta(days=29), now + timedelta(days=60)
    code = await _code(db, b.buyer, later)
    renewal = _event(order_no, EventKind.RENEWED, "2", payment_id="fpch_2", period_end=until)
    bound, renewed = await _interleave(
        db,
        lambda s: _bind_in(s, b.buyer_wx, code, later),
        lambda: process_notice(db, "fakepay", renewal, later),
    )
    assert (bound, str(renewed)) == (LinkOutcome.BOUND, "renewed")
    ms = await memberships(db)
    assert ms[b.room.id].user_id == b.buyer_wx.id
    assert ms[b.group.id].expires_at == ms[b.room.id].expires_at == until


async def test_a_bind_while_an_owner_grant_is_open_still_moves_the_room(
    db: Database, now: datetime
):
    """The owner grants the room to the buyer's Telegram id ("2000") as the buyer links:
    the grant parked it on the Telegram account, and the bind must move it."""
    b = await bundle(db, now)
    code = await _code(db, b.buyer, now)

    async def grant(s: Any) -> Any:
        return await grant_access(
            s,
            await _get(s, User, b.owner.id),
            await _get(s, ChatGroup, b.room.id),
            UserRef(platform_user_id="2000"),
            30,
            now,
        )

    _granted, bound = await _interleave(db, grant, lambda: _bind(db, b.buyer_wx, code, now))
    assert bound is LinkOutcome.BOUND
    ms = await memberships(db)
    assert (ms[b.room.id].user_id, ms[b.room.id].status) == (b.buyer_wx.id, "active")
