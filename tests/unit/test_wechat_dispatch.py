"""One WeChat message, applied exactly once (bot/wechat/dispatch.py), on a real database:
its id is claimed in the handler's transaction, its replies become outbox `reply` rows of
platform `wechat` in that same transaction, a redelivery changes nothing, and a handler
that fails leaves nothing behind, not even the claim, so the next delivery applies it."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.wechat.dispatch import (
    MESSAGE_RETENTION,
    Applied,
    Dispatcher,
    prune_messages,
    reply_payload,
)
from bot.wechat.events import Incoming, Outgoing
from storage.clock import MovableClock
from storage.db import Database
from storage.models import Outbox, User, WechatMessage
from storage.queries import get_or_create_user

ALICE = "wxid_alice"


def incoming(text: str = "菜单", message_id: str = "m1", **kw: Any) -> Incoming:
    return Incoming(message_id, ALICE, "Alice", text, **kw)


class Handler:
    """Creates the sender's user (a change the transaction must keep or drop whole) and
    answers; `fail` raises after that, `commit_first` commits part way before (as
    billing.checkout.open_checkout does)."""

    def __init__(self, *, fail: int = 0, commit_first: bool = False) -> None:
        self.calls = 0
        self.fail, self.commit_first = fail, commit_first

    async def __call__(self, session: AsyncSession, msg: Incoming) -> list[Outgoing]:
        self.calls += 1
        await get_or_create_user(session, "wechat", msg.sender_id, datetime.now(UTC))
        if self.commit_first:
            await session.commit()
        if self.fail:
            self.fail -= 1
            raise RuntimeError("the handler broke")
        return [
            Outgoing(to=msg.sender_id, text=f"echo {msg.text}"),
            Outgoing(to=msg.sender_id, image_png=b"\x89PNG fake", image_name="pay.png"),
        ]


async def count(db: Database, model: Any, *where: Any) -> int:
    async with db.session() as s:
        return int(
            (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()
        )


def dispatcher(
    db: Database, handler: Handler, clock: MovableClock | None = None
) -> tuple[Dispatcher, list[int]]:
    woken: list[int] = []
    return Dispatcher(db, clock or MovableClock(), handler, lambda: woken.append(1)), woken


async def test_a_message_and_its_replies_commit_together(db: Database):
    handler = Handler()
    d, woken = dispatcher(db, handler)
    assert await d.apply(incoming()) == Applied.APPLIED
    rows = [(r.kind, r.platform, r.payload, r.status) for r in await _outbox(db)]
    assert rows == [
        ("reply", "wechat", {"chat_id": ALICE, "call": {"text": "echo 菜单"}}, "pending"),
        (
            "reply",
            "wechat",
            {
                "chat_id": ALICE,
                "call": {
                    "image_base64": base64.b64encode(b"\x89PNG fake").decode(),
                    "name": "pay.png",
                },
            },
            "pending",
        ),
    ]
    assert await count(db, WechatMessage, WechatMessage.message_id == "m1") == 1
    assert await count(db, User) == 1
    assert woken == [1]  # the outbox sends them now, not at its next tick


async def test_a_redelivered_message_changes_nothing(db: Database):
    handler = Handler()
    d, _ = dispatcher(db, handler)
    assert await d.apply(incoming()) == Applied.APPLIED
    assert await d.apply(incoming()) == Applied.DUPLICATE
    assert handler.calls == 1 and d.duplicates == 1
    assert await count(db, Outbox) == 2


async def test_the_same_message_twice_at_once_is_applied_once(db: Database):
    handler = Handler()
    d, _ = dispatcher(db, handler)
    outcomes = await asyncio.gather(d.apply(incoming()), d.apply(incoming()))
    assert sorted(outcomes) == [Applied.APPLIED, Applied.DUPLICATE]
    assert handler.calls == 1
    assert await count(db, Outbox) == 2


@pytest.mark.parametrize("commit_first", [False, True])
async def test_a_failing_handler_leaves_nothing_and_the_next_delivery_applies(
    db: Database, commit_first: bool
):
    handler = Handler(fail=1, commit_first=commit_first)
    d, woken = dispatcher(db, handler)
    assert await d.apply(incoming()) == Applied.FAILED
    # Nothing said, the claim gone (also when the handler had committed it part way).
    assert await count(db, Outbox) == 0
    assert await count(db, WechatMessage) == 0
    assert woken == [] and d.failures == 1
    if not commit_first:
        assert await count(db, User) == 0  # rolled back with the rest

    assert await d.apply(incoming()) == Applied.APPLIED
    assert handler.calls == 2
    assert await count(db, Outbox) == 2 and await count(db, WechatMessage) == 1


def test_reply_payload_needs_text_or_image():
    assert reply_payload(Outgoing(to="r@chatroom", text="hi")) == {
        "chat_id": "r@chatroom",
        "call": {"text": "hi"},
    }
    with pytest.raises(ValueError, match="neither text nor image"):
        reply_payload(Outgoing(to=ALICE))


async def test_old_message_ids_are_pruned(db: Database):
    clock = MovableClock()
    d, _ = dispatcher(db, Handler(), clock)
    await d.apply(incoming(message_id="old"))
    clock.advance(MESSAGE_RETENTION - timedelta(hours=1))
    await d.apply(incoming(message_id="new"))
    assert await prune_messages(db, clock.now()) == 0
    clock.advance(timedelta(hours=2))
    assert await prune_messages(db, clock.now()) == 1
    assert [r.message_id for r in await _rows(db, WechatMessage)] == ["new"]


async def _outbox(db: Database) -> list[Outbox]:
    return await _rows(db, Outbox)


async def _rows(db: Database, model: Any) -> list[Any]:
    async with db.session() as s:
        return list((await s.execute(select(model).order_by(model.id))).scalars().all())
