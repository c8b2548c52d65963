"""The bot's per-update session: each update is applied once; what a handler did is committed
before the bot says so, and a reply that meets a fault is retried or left to the outbox."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter, TelegramServerError
from aiogram.methods import AnswerCallbackQuery, SendMessage
from aiogram.types import Update
from aiogram.types import User as TgUser
from sqlalchemy import func, select
from sqlmodel import col

from bot.middlewares import RepliesAfterCommit, SessionMiddleware
from bot.replies import REPLY_KIND, ReplySender
from storage.clock import MovableClock
from storage.db import Database
from storage.models import Outbox, TelegramUpdate, User

BOT_ID = 4242


class FakeBot:
    """Answers Bot API calls with a scripted list of faults first, then success."""

    id = BOT_ID

    def __init__(self, on_call: Any = None, faults: list[Exception] | None = None) -> None:
        self.sent: list[Any] = []
        self.on_call, self.faults = on_call, list(faults or [])

    async def __call__(self, method: Any, request_timeout: int | None = None) -> Any:
        if self.on_call is not None:
            await self.on_call(method)
        if self.faults:
            raise self.faults.pop(0)
        self.sent.append(method)
        return True


def _data(db: Database, bot: FakeBot) -> dict[str, Any]:
    woken: list[bool] = []
    ctx = SimpleNamespace(db=db, clock=MovableClock(), wake_outbox=lambda: woken.append(True))
    return {
        "ctx": ctx,
        "bot": bot,
        "woken": woken,
        "event_from_user": TgUser(id=42, is_bot=False, first_name="Ann"),
    }


def _middleware(**kw: Any) -> SessionMiddleware:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    mw = SessionMiddleware(ReplySender(sleep=sleep, **kw))
    mw.slept = slept  # type: ignore[attr-defined]
    return mw


async def _language_seen_elsewhere(db: Database) -> str | None:
    async with db.session() as other:
        return (
            await other.execute(
                select(col(User.language)).where(col(User.platform_user_id) == "42")
            )
        ).scalar_one_or_none()


async def _count(db: Database, model: Any, *where: Any) -> int:
    async with db.session() as s:
        return int(
            (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()
        )


async def _replies(db: Database) -> list[Outbox]:
    async with db.session() as s:
        return list(
            (
                await s.execute(
                    select(Outbox).where(col(Outbox.kind) == REPLY_KIND).order_by(col(Outbox.id))
                )
            ).scalars()
        )


def _say(text: str, chat: int = 42) -> SendMessage:
    return SendMessage(chat_id=chat, text=text)


async def test_a_reply_goes_out_after_the_commit_of_what_was_done(db: Database):
    seen_at_send: list[str | None] = []

    async def on_call(method: Any) -> None:
        seen_at_send.append(await _language_seen_elsewhere(db))

    async def handler(event: Any, data: dict[str, Any]) -> str:
        data["user"].language = "zh"  # the change the reply is about
        data["out"].add(_say("ok"))
        assert seen_at_send == []  # nothing is said while the handler runs
        return "handled"

    bot = FakeBot(on_call)
    data = _data(db, bot)
    assert await _middleware()(handler, Update(update_id=1), data) == "handled"
    # Another connection already saw the change when the message went out.
    assert seen_at_send == ["zh"]
    assert [m.text for m in bot.sent] == ["ok"]
    assert data["woken"] == [True]
    # The reply's outbox row (its safety net) is gone: the worker will not send it again.
    assert await _replies(db) == []


async def test_a_failed_commit_sends_nothing(db: Database, now: datetime):
    bot = FakeBot()

    async def handler(event: Any, data: dict[str, Any]) -> None:
        # A second row for the same identity breaks the unique index at commit.
        data["session"].add(
            User(platform="telegram", platform_user_id="42", created_at=now, refund_policy="revoke")
        )
        data["out"].add(_say("done"))

    with pytest.raises(Exception):  # noqa: B017 - the driver's IntegrityError, per backend
        await _middleware()(handler, Update(update_id=1), _data(db, bot))
    assert bot.sent == []
    assert await _replies(db) == []
    # The update is not marked applied: Telegram's next delivery applies it.
    assert await _count(db, TelegramUpdate) == 0


async def test_a_handler_that_fails_changes_nothing_and_says_nothing(db: Database):
    bot = FakeBot()

    async def handler(event: Any, data: dict[str, Any]) -> None:
        data["user"].language = "zh"
        data["out"].add(_say("done"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await _middleware()(handler, Update(update_id=1), _data(db, bot))
    assert bot.sent == []
    assert await _language_seen_elsewhere(db) is None
    assert await _count(db, TelegramUpdate) == 0


async def test_an_update_delivered_again_is_applied_once(db: Database):
    calls: list[int] = []
    bot = FakeBot()

    async def handler(event: Any, data: dict[str, Any]) -> None:
        calls.append(event.update_id)
        data["out"].add(_say("plan added"))

    mw = _middleware()
    await mw(handler, Update(update_id=7), _data(db, bot))
    assert await mw(handler, Update(update_id=7), _data(db, bot)) is None
    await mw(handler, Update(update_id=8), _data(db, bot))
    assert calls == [7, 8]
    assert [m.text for m in bot.sent] == ["plan added", "plan added"]
    assert mw.duplicates == 1
    assert await _count(db, TelegramUpdate) == 2


async def test_a_handler_that_rolls_back_still_marks_its_update(db: Database):
    """A refused command undoes its own work with session.rollback(); the update stays
    applied (its refusal was said), so a redelivery does not say it again."""
    bot = FakeBot()

    async def handler(event: Any, data: dict[str, Any]) -> None:
        await data["session"].rollback()
        data["out"].add(_say("bad argument"))

    mw = _middleware()
    await mw(handler, Update(update_id=3), _data(db, bot))
    await mw(handler, Update(update_id=3), _data(db, bot))
    assert [m.text for m in bot.sent] == ["bad argument"]
    assert await _count(db, TelegramUpdate) == 1


async def test_a_handler_that_fails_after_committing_part_way_is_applied_again(db: Database):
    """The pay button, /cancel and /revoke commit before asking the provider, which makes
    the update's claim durable; if the handler fails after that, the next delivery must
    apply the update again, not skip it as applied and leave the press unanswered."""
    bot = FakeBot()
    calls: list[int] = []

    async def handler(event: Any, data: dict[str, Any]) -> None:
        calls.append(event.update_id)
        await data["session"].commit()  # no transaction across the provider call
        if len(calls) == 1:
            raise RuntimeError("the provider's answer could not be stored")
        data["out"].add(_say("checkout ready"))

    mw = _middleware()
    with pytest.raises(RuntimeError):
        await mw(handler, Update(update_id=5), _data(db, bot))
    assert await _count(db, TelegramUpdate) == 0 and bot.sent == []
    await mw(handler, Update(update_id=5), _data(db, bot))  # Telegram sends it again
    assert calls == [5, 5] and [m.text for m in bot.sent] == ["checkout ready"]
    assert await _count(db, TelegramUpdate) == 1 and mw.duplicates == 0
    # Applied now: a third delivery is a no-op.
    await mw(handler, Update(update_id=5), _data(db, bot))
    assert calls == [5, 5] and mw.duplicates == 1


async def test_a_429_is_waited_out_and_the_reply_sent(db: Database):
    bot = FakeBot(
        faults=[
            TelegramRetryAfter(_say("x"), "Too Many Requests", 2),
            TelegramServerError(_say("x"), "Bad Gateway"),
        ]
    )

    async def handler(event: Any, data: dict[str, Any]) -> None:
        data["out"].add(_say("your link"))

    mw = _middleware()
    await mw(handler, Update(update_id=1), _data(db, bot))
    assert [m.text for m in bot.sent] == ["your link"]
    assert mw.slept[0] == 2  # type: ignore[attr-defined]  # retry_after obeyed
    assert await _replies(db) == []


async def test_a_reply_that_does_not_land_in_time_is_left_to_the_outbox(db: Database):
    """Past the patience, the reply and every reply after it (order kept) become due for
    the outbox worker; the update itself is applied."""
    bot = FakeBot(faults=[TelegramRetryAfter(_say("x"), "Too Many Requests", 30)])

    async def handler(event: Any, data: dict[str, Any]) -> None:
        data["user"].language = "zh"
        data["out"].add(_say("first"))
        data["out"].add(_say("second"))

    data = _data(db, bot)
    now = data["ctx"].clock.now()
    await _middleware(patience=5)(handler, Update(update_id=1), data)
    assert bot.sent == []
    assert await _language_seen_elsewhere(db) == "zh"
    rows = await _replies(db)
    assert [(r.status, r.attempts) for r in rows] == [("pending", 0), ("pending", 0)]
    assert [r.payload["call"]["params"]["text"] for r in rows] == ["first", "second"]
    # Both due when the 429 ends (the second waits behind the first), not before.
    assert rows[0].next_attempt_at == rows[1].next_attempt_at
    assert 29 <= (rows[0].next_attempt_at - now).total_seconds() <= 31


async def test_a_refused_reply_is_recorded_not_retried(db: Database):
    bot = FakeBot(faults=[TelegramBadRequest(_say("x"), "Forbidden: bot was blocked")])

    async def handler(event: Any, data: dict[str, Any]) -> None:
        data["out"].add(_say("hello"))

    await _middleware()(handler, Update(update_id=1), _data(db, bot))
    assert [(r.status, r.last_error) for r in await _replies(db)] == [
        ("failed", "Forbidden: bot was blocked")
    ]


async def test_a_failed_callback_answer_does_not_stop_the_reply(db: Database):
    bot = FakeBot(
        faults=[TelegramServerError(AnswerCallbackQuery(callback_query_id="q"), "Bad Gateway")]
    )

    async def handler(event: Any, data: dict[str, Any]) -> None:
        data["out"].add(AnswerCallbackQuery(callback_query_id="q"))
        data["out"].add(_say("checkout link"))

    await _middleware()(handler, Update(update_id=1), _data(db, bot))
    assert [getattr(m, "text", None) for m in bot.sent] == ["checkout link"]
    assert await _replies(db) == []


async def test_a_reply_sent_straight_from_a_handler_is_refused(db: Database):
    guard = RepliesAfterCommit()

    async def make_request(bot: Any, method: Any) -> str:
        return "sent"

    async def handler(event: Any, data: dict[str, Any]) -> None:
        await guard(make_request, None, _say("too early"))

    with pytest.raises(RuntimeError, match="after the commit"):
        await _middleware()(handler, Update(update_id=1), _data(db, FakeBot()))
    # Outside handlers (the outbox's calls) everything passes.
    assert await guard(make_request, None, _say("x")) == "sent"


async def test_handler_replies_take_their_turn_in_the_process_budget(db: Database):
    from bot.gateway import RateLimiter

    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        now[0] += seconds

    sender = ReplySender()
    sender.limiter = RateLimiter(10, 60, 20, clock=lambda: now[0], sleep=sleep)

    async def handler(event: Any, data: dict[str, Any]) -> None:
        for chat in (-100, -100, 42, 42):  # two into a group, two into a private chat
            data["out"].add(_say("hi", chat))

    bot = FakeBot()
    await SessionMiddleware(sender)(handler, Update(update_id=1), _data(db, bot))
    assert len(bot.sent) == 4
    # Each reply keeps to the global budget (10/s: 0.1 s after the call before it).
    assert slept == [pytest.approx(0.1)] * 3
