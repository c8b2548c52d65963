"""The paid -> invite delivery path stays cheap: its database work runs as units of work
(no ORM sessions), the row is settled in the same unit that stores the link and queues the
message, and aiogram's parametrized Response models are built once, not per call."""

from __future__ import annotations

import asyncio
import gc
from datetime import datetime, timedelta

import pytest
from aiogram.methods import CreateChatInviteLink, Response, SendMessage
from sqlalchemy import select

from bot.responses import RESPONSE_TYPES
from membership.grants import grant_days
from scheduler.outbox import OutboxWorker
from storage.db import Database
from storage.models import Invite, Outbox
from tests.factories import make_shop
from tests.unit.test_invites import LinkMaker
from tests.unit.test_outbox import FakeClock


async def test_a_delivery_settles_its_row_with_the_link_and_the_message(
    db: Database, now: datetime, monkeypatch: pytest.MonkeyPatch
):
    shop = await make_shop(db, now, invite_mode="single_use")
    async with db.transaction() as s:
        await grant_days(s, shop.buyer, shop.group, 30, now, actor="test", reason="test")
    calls = {"unit": 0, "session": 0}
    unit, session = db.unit, db.session

    def counting(name, real):
        def wrapper(*a, **kw):
            calls[name] += 1
            return real(*a, **kw)

        return wrapper

    monkeypatch.setattr(db, "unit", counting("unit", unit))
    monkeypatch.setattr(db, "session", counting("session", session))
    gw = LinkMaker()
    worker = OutboxWorker(
        db,
        {"telegram": gw},
        FakeClock(now),
        invite_ttl=timedelta(hours=24),
    )
    assert await worker.run_once() == 1
    # The claim, the read, and one unit that stores the link, queues the message and
    # settles the row: no ORM session, no separate settling transaction.
    assert calls == {"unit": 3, "session": 0}
    assert worker.delivered == 1
    monkeypatch.undo()
    async with db.session() as s:
        rows = {r.kind: r for r in (await s.execute(select(Outbox))).scalars()}
        invite = (await s.execute(select(Invite))).scalar_one()
    assert rows["deliver_invite"].status == "done"
    assert rows["notify"].status == "pending"
    assert invite.link == gw.made[0] == rows["notify"].payload["params"]["link"]


def test_response_models_of_our_bot_calls_are_built_once():
    gc.collect()
    for method in (CreateChatInviteLink, SendMessage):
        assert Response[method.__returning__] is RESPONSE_TYPES[method]  # type: ignore[name-defined]


async def test_a_row_claimed_again_mid_delivery_is_settled_once_and_not_sent_twice(
    db: Database, now: datetime
):
    """The row's lease runs out while its link is being made, and the worker claims it again
    (as it does after a restart of the budgets, or a slow call): the one delivery settles it
    under the newest claim, so it does not come back for a second message."""
    shop = await make_shop(db, now, invite_mode="single_use")
    async with db.transaction() as s:
        await grant_days(s, shop.buyer, shop.group, 30, now, actor="test", reason="test")
    clock = FakeClock(now)

    class SlowLinks(LinkMaker):
        async def create_invite(self, chat_id, **kw):
            clock.t += timedelta(minutes=5)  # past the lease: the row is due again
            assert await worker._fill() is False  # ...and claimed again by the same worker
            return await super().create_invite(chat_id, **kw)

        sent: list[str]

        async def send(self, user_id, key, params, language, buttons=None):
            self.sent.append(key)

    gw = SlowLinks()
    gw.sent = []
    worker = OutboxWorker(
        db,
        {"telegram": gw},
        clock,
        invite_ttl=timedelta(hours=24),
        lease=timedelta(minutes=2),
    )
    await worker._fill()
    await asyncio.gather(*worker._tasks.values())
    clock.t += timedelta(hours=1)
    await worker.drain()  # anything left pending and due would be delivered again here
    async with db.session() as s:
        rows = list((await s.execute(select(Outbox).order_by(Outbox.id))).scalars())
    assert [(r.kind, r.status) for r in rows if r.kind == "deliver_invite"] == [
        ("deliver_invite", "done")
    ]
    assert len([r for r in rows if r.kind == "notify"]) == 1
    assert len(gw.made) == 1
    assert gw.sent == ["invite_single_given"]
