"""The bot's per-update session: what a handler did is committed before the bot says so."""
from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiogram.methods import SendMessage
from aiogram.types import User as TgUser
from sqlalchemy import select

from bot.middlewares import CommitBeforeSend, SessionMiddleware
from storage.clock import MovableClock
from storage.db import Database
from storage.models import User


def _data(db: Database) -> dict[str, Any]:
    woken: list[bool] = []
    ctx = SimpleNamespace(db=db, clock=MovableClock(), wake_outbox=lambda: woken.append(True))
    return {"ctx": ctx, "event_from_user": TgUser(id=42, is_bot=False, first_name="Ann"),
            "woken": woken}


async def _language_seen_elsewhere(db: Database) -> str | None:
    async with db.session() as other:
        return (await other.execute(
            select(User.language).where(User.platform_user_id == "42"))).scalar_one_or_none()


async def test_a_reply_sent_mid_handler_follows_the_commit_of_what_was_done(db: Database):
    seen_at_send: list[str | None] = []

    async def make_request(bot: Any, method: Any) -> str:
        seen_at_send.append(await _language_seen_elsewhere(db))
        return "sent"

    async def handler(event: Any, data: dict[str, Any]) -> str:
        data["user"].language = "zh"  # the change the reply is about
        return await CommitBeforeSend()(make_request, None, SendMessage(chat_id=42, text="ok"))

    data = _data(db)
    assert await SessionMiddleware()(handler, object(), data) == "sent"
    # Another connection already saw the change when the message went out.
    assert seen_at_send == ["zh"]
    assert data["woken"] == [True]


async def test_a_handler_that_fails_after_replying_keeps_what_it_said(db: Database):
    async def make_request(bot: Any, method: Any) -> str:
        return "sent"

    async def handler(event: Any, data: dict[str, Any]) -> None:
        data["user"].language = "zh"
        await CommitBeforeSend()(make_request, None, SendMessage(chat_id=42, text="done"))
        data["user"].language = "en"  # a later step that fails: only it is rolled back
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await SessionMiddleware()(handler, object(), _data(db))
    assert await _language_seen_elsewhere(db) == "zh"


async def test_a_failed_commit_sends_nothing(db: Database, now: datetime):
    sent: list[object] = []

    async def make_request(bot: Any, method: Any) -> str:
        sent.append(method)
        return "sent"

    async def handler(event: Any, data: dict[str, Any]) -> None:
        session = data["session"]
        # A second row for the same identity breaks the unique index at commit.
        session.add(User(platform="telegram", platform_user_id="42", created_at=now,
                         refund_policy="revoke"))
        await CommitBeforeSend()(make_request, None, SendMessage(chat_id=42, text="done"))

    with pytest.raises(Exception):  # noqa: B017 - the driver's IntegrityError, per backend
        await SessionMiddleware()(handler, object(), _data(db))
    assert sent == []


async def test_calls_outside_a_handler_are_sent_as_they_are():
    async def make_request(bot: Any, method: Any) -> str:
        return "sent"

    assert await CommitBeforeSend()(make_request, None, SendMessage(chat_id=1, text="x")) == "sent"


async def test_handler_replies_take_their_turn_in_the_process_budget(db: Database):
    from bot.gateway import RateLimiter

    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        now[0] += seconds

    replies = CommitBeforeSend()
    replies.limiter = RateLimiter(10, 60, 20, clock=lambda: now[0], sleep=sleep)

    async def make_request(bot: Any, method: Any) -> str:
        return "sent"

    async def handler(event: Any, data: dict[str, Any]) -> None:
        for chat in (-100, -100, 42, 42):  # two into a group, two into a private chat
            await replies(make_request, None, SendMessage(chat_id=chat, text="hi"))

    await SessionMiddleware()(handler, object(), _data(db))
    # Each reply keeps to the global budget (10/s: 0.1 s after the call before it).
    assert slept == [pytest.approx(0.1)] * 3
    # Outside a handler (the outbox's calls) the gateway takes the budget, not this.
    slept.clear()
    await replies(make_request, None, SendMessage(chat_id=-100, text="x"))
    assert slept == []
