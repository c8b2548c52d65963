"""The polling confirmation rule (bot/polling.py): the offset moves past the longest prefix of
applied (or given-up) updates, never past one that failed and will be tried again; and the
loop around it, over a scripted getUpdates."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from aiogram.exceptions import TelegramRetryAfter, TelegramUnauthorizedError
from aiogram.methods import GetUpdates
from aiogram.types import Update
from hypothesis import given
from hypothesis import strategies as st

from bot.polling import MAX_TRIES, Outcome, Poller, retry_delay, settle

A, F = Outcome.APPLIED, Outcome.FAILED


def test_all_applied_confirms_the_whole_batch():
    assert settle(None, [(7, A), (8, A), (9, A)], {}).offset == 10


def test_the_first_failure_stops_the_offset_even_if_later_ones_committed():
    s = settle(7, [(7, A), (8, F), (9, A)], {8: 1})
    assert (s.offset, s.retry, s.given_up) == (8, (8,), ())


def test_a_failure_first_confirms_nothing():
    assert settle(None, [(5, F), (6, A)], {5: 2}).offset is None
    assert settle(5, [(5, F), (6, A)], {5: 2}).offset == 5


def test_a_poison_update_is_given_up_after_max_tries_and_confirmed():
    s = settle(5, [(5, F), (6, A)], {5: MAX_TRIES})
    assert (s.offset, s.given_up, s.retry) == (7, (5,), ())


def test_a_poison_update_behind_a_retried_one_waits_its_turn():
    s = settle(5, [(5, F), (6, F)], {5: 1, 6: MAX_TRIES})
    assert (s.offset, s.given_up, s.retry) == (5, (), (5,))


def test_outcomes_are_taken_in_update_id_order():
    assert settle(None, [(9, A), (7, A), (8, F)], {8: 1}).offset == 8


def test_retry_delay_doubles_and_is_capped():
    assert [retry_delay(n, 0.5, 3.0) for n in (1, 2, 3, 4, 9)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@given(
    st.lists(st.tuples(st.booleans(), st.integers(1, MAX_TRIES + 1)), max_size=12),
    st.integers(1, 1000),
)
def test_no_retried_update_is_ever_confirmed(batch: list[tuple[bool, int]], first: int):
    outcomes = [(first + i, A if ok else F) for i, (ok, _) in enumerate(batch)]
    failures = {first + i: n for i, (ok, n) in enumerate(batch) if not ok}
    s = settle(first, outcomes, failures)
    assert s.offset is not None and s.offset >= first
    confirmed = {u for u, _ in outcomes if u < s.offset}
    retried = {u for u, o in outcomes if o is F and failures[u] < MAX_TRIES}
    assert not confirmed & retried
    assert set(s.retry) == retried
    assert set(s.given_up) <= confirmed
    # Longest prefix: the update at the new offset (if any in the batch) is a retried one.
    if s.offset < first + len(outcomes):
        assert s.offset in retried


class _FakeBot:
    """getUpdates answered from a script: a list of updates or an exception per call."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.offsets: list[int | None] = []
        self.id = 42
        self.session = SimpleNamespace(timeout=60)
        self.done = asyncio.Event()

    async def __call__(self, method: GetUpdates, **_: Any) -> list[Update]:
        self.offsets.append(method.offset)
        if not self.script:
            self.done.set()
            await asyncio.Event().wait()
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


def _updates(*ids: int) -> list[Update]:
    return [Update(update_id=i) for i in ids]


async def _run(script: list[Any], handle: Any, **kw: Any) -> tuple[_FakeBot, Poller]:
    fake = _FakeBot(script)
    poller = Poller(fake, handle, allowed_updates=["message"], timeout=10, **kw)
    poller.start()
    await asyncio.wait_for(fake.done.wait(), 10)
    await poller.stop(1)
    return fake, poller


async def test_a_failed_update_is_fetched_again_and_only_then_confirmed(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr("bot.polling.RETRY_BASE_SECONDS", 0.01)
    tries: dict[int, int] = {}

    async def handle(u: Update) -> None:
        tries[u.update_id] = tries.get(u.update_id, 0) + 1
        if u.update_id == 2 and tries[2] == 1:
            raise ConnectionError("database down")

    fake, _ = await _run([_updates(1, 2, 3), _updates(2, 3)], handle)
    assert fake.offsets == [None, 2, 4]
    assert tries == {1: 1, 2: 2, 3: 2}


async def test_fetch_errors_back_off_and_a_401_stops(caplog: pytest.LogCaptureFixture):
    handled: list[int] = []

    async def handle(u: Update) -> None:
        handled.append(u.update_id)

    method = GetUpdates()
    script = [
        TelegramRetryAfter(method, "Too Many Requests", retry_after=0),
        ConnectionError("reset"),
        _updates(1),
        TelegramUnauthorizedError(method, "Unauthorized"),
    ]
    fake = _FakeBot(script)
    poller = Poller(fake, handle, allowed_updates=["message"], timeout=10)
    with caplog.at_level(logging.ERROR, logger="bot.polling"):
        await asyncio.wait_for(poller.run(), 10)  # returns by itself on the 401
    assert handled == [1] and fake.offsets == [None, None, None, 2]
    assert "polling stopped: Telegram refused the bot token (401" in caplog.text


async def test_stop_cancels_the_long_poll_and_waits_for_handlers():
    release = asyncio.Event()
    finished: list[int] = []

    async def handle(u: Update) -> None:
        await release.wait()
        finished.append(u.update_id)

    fake = _FakeBot([_updates(1)])
    poller = Poller(fake, handle, allowed_updates=["message"], timeout=10)
    poller.start()
    while not poller._handlers:
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(poller.stop(5))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # the handler in progress is waited for
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert finished == [1] and fake.offsets == [None]  # nothing fetched (or confirmed) after


async def test_stop_cuts_off_a_handler_past_the_grace_period(caplog: pytest.LogCaptureFixture):
    async def handle(u: Update) -> None:
        await asyncio.Event().wait()

    fake = _FakeBot([_updates(1)])
    poller = Poller(fake, handle, allowed_updates=["message"], timeout=10)
    poller.start()
    while not poller._handlers:
        await asyncio.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="bot.polling"):
        await asyncio.wait_for(poller.stop(0.05), 5)
    assert "cancelled 1 update handlers" in caplog.text
    assert poller.offset is None  # not confirmed: the next instance fetches it again
