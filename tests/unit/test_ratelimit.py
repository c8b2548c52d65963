"""The Bot API rate limiter, on a fake clock: the budgets hold, chats are independent."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bot.gateway import RateLimiter
from membership.gateway import RetryAfter


class FakeTime:
    """A clock and a sleep() that only move when every task is asleep: the earliest sleeper
    wakes and the clock jumps to its deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), fut))
        await fut

    async def step(self) -> None:
        for _ in range(5):  # let every runnable task reach its next sleep
            await asyncio.sleep(0)
        if self._sleepers:
            at, _, fut = heapq.heappop(self._sleepers)
            self.now = max(self.now, at)
            fut.set_result(None)

    async def run(self, *coros: Awaitable[Any]) -> list[Any]:
        tasks = [asyncio.ensure_future(c) for c in coros]
        while not all(t.done() for t in tasks):
            await self.step()
        return [t.result() for t in tasks]


def limiter(
    ft: FakeTime, per_second: float = 25, per_minute: float = 20, max_wait: float = 10.0
) -> RateLimiter:
    return RateLimiter(
        per_second, per_minute, max_chat_wait=max_wait, clock=ft.clock, sleep=ft.sleep
    )


def timed(
    ft: FakeTime, lim: RateLimiter, chat: str | None, out: list[tuple[float, str | None]], **kw: Any
) -> Callable[[], Awaitable[None]]:
    async def go() -> None:
        await lim.acquire(chat, **kw)
        out.append((ft.now, chat))

    return go


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


async def test_global_budget_holds_across_many_chats():
    ft = FakeTime()
    lim = limiter(ft)
    calls: list[tuple[float, str | None]] = []
    await ft.run(*(timed(ft, lim, f"user{i}", calls)() for i in range(200)))
    times = [t for t, _ in calls]
    assert len(times) == 200
    assert most_in_window(times, 1.0) <= 25  # never over the budget...
    assert max(times) == pytest.approx(199 / 25)  # ...and the whole of it is used


async def test_a_stalled_event_loop_does_not_turn_into_a_burst():
    ft = FakeTime()
    lim = limiter(ft)
    calls: list[tuple[float, str | None]] = []
    tasks = [asyncio.ensure_future(timed(ft, lim, f"user{i}", calls)()) for i in range(60)]
    while len(calls) < 10:
        await ft.step()
    ft.now += 2.0  # a long commit blocked the loop: every waiter's turn has passed
    await ft.run(*tasks)
    times = [t for t, _ in calls]
    assert most_in_window(times, 1.0) <= 25
    assert min(b - a for a, b in itertools.pairwise(sorted(times))) >= 1 / 25 - 1e-9


async def test_per_chat_budget_spaces_one_chat():
    ft = FakeTime()
    lim = limiter(ft, max_wait=1000)
    calls: list[tuple[float, str | None]] = []
    await ft.run(*(timed(ft, lim, "-100", calls)() for _ in range(5)))
    assert [t for t, _ in calls] == pytest.approx([0, 3, 6, 9, 12])  # 20/min: one per 3 s


async def test_messages_into_a_group_wait_the_group_budget():
    ft = FakeTime()
    lim = RateLimiter(25, 50, 20, max_chat_wait=1000, clock=ft.clock, sleep=ft.sleep)
    calls: list[tuple[float, str | None]] = []
    await ft.run(*(timed(ft, lim, "42", calls)() for _ in range(3)))  # a user: 50/min
    assert [t for t, _ in calls] == pytest.approx([0, 1.2, 2.4])
    calls.clear()
    ft.now = 100.0
    await ft.run(
        timed(ft, lim, "-100", calls)(),  # a ban: 50/min
        timed(ft, lim, "-100", calls)(),  # an unban: 50/min
        timed(ft, lim, "-100", calls, group_message=True)(),  # a message: 20/min
        timed(ft, lim, "-100", calls, group_message=True)(),
    )
    assert [t - 100 for t, _ in calls] == pytest.approx([0, 1.2, 4.2, 7.2])


async def test_a_busy_chat_does_not_hold_up_the_others():
    ft = FakeTime()
    lim = limiter(ft, max_wait=1000)
    calls: list[tuple[float, str | None]] = []
    busy = [timed(ft, lim, "-100", calls)() for _ in range(4)]
    others = [timed(ft, lim, f"user{i}", calls)() for i in range(50)]
    await ft.run(*busy, *others)
    other_times = sorted(t for t, c in calls if c != "-100")
    # The 50 other chats go out at the global rate as if the busy chat were not there
    # (it holds one global slot per turn, no more).
    assert other_times[-1] <= (50 + 4) / 25
    assert [t for t, c in calls if c == "-100"] == pytest.approx([0, 3, 6, 9], abs=0.1)
    assert most_in_window([t for t, _ in calls], 1.0) <= 25


async def test_chat_spacing_holds_when_the_global_queue_delays_a_call():
    ft = FakeTime()
    lim = limiter(ft, per_second=1, max_wait=1000)  # a slow global budget: a long queue
    calls: list[tuple[float, str | None]] = []
    queued = [timed(ft, lim, f"user{i}", calls)() for i in range(10)]
    await ft.run(*queued, timed(ft, lim, "-100", calls)(), timed(ft, lim, "-100", calls)())
    first, second = [t for t, c in calls if c == "-100"]
    assert first == pytest.approx(10)  # behind the ten others in the global queue
    assert second - first >= 3  # yet still a whole chat interval after it
    assert most_in_window([t for t, _ in calls], 1.0) <= 1


async def test_a_long_chat_queue_is_handed_back_not_waited_for():
    ft = FakeTime()
    lim = limiter(ft, max_wait=10)
    calls: list[tuple[float, str | None]] = []
    await ft.run(*(timed(ft, lim, "-100", calls)() for _ in range(4)))  # slots 0, 3, 6, 9
    assert ft.now == pytest.approx(9)
    # The next turn of this chat is at 12: fine. Queue four more at once: the fifth and
    # later would wait more than 10 s, so they are refused with the wait they would need.
    ft.now = 9.0
    results = await ft.run(*(_outcome(lim.acquire("-100")) for _ in range(6)))
    waited = [r for r in results if r is None]
    refused = [r for r in results if isinstance(r, RetryAfter)]
    assert len(waited) == 3 and len(refused) == 3
    assert all(r.seconds > 10 for r in refused)
    # patient callers (the unban after a ban) always wait their turn.
    before = ft.now
    await ft.run(lim.acquire("-100", patient=True))
    assert ft.now > before


async def test_callers_sent_away_get_turns_of_their_own_spread_over_the_budget():
    ft = FakeTime()
    lim = limiter(ft, per_minute=20, max_wait=10)  # one call per 3 s per chat
    queued = [asyncio.ensure_future(lim.acquire("-100")) for _ in range(4)]  # turns 0..9
    for _ in range(5):
        await asyncio.sleep(0)
    # A launch: 200 more rows for the same chat while its queue is full. Each is refused
    # with a turn of its own, 3 s after the one before, not all with the same short wait.
    waits = []
    for _ in range(200):
        with pytest.raises(RetryAfter) as refused:
            lim.check("-100")
        waits.append(refused.value.seconds)
    assert waits == sorted(waits) and waits[0] > 0
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(waits)}
    assert gaps == {3.0}
    # acquire() refuses the same way, after the turns already handed out.
    [late] = await ft.run(_outcome(lim.acquire("-100")))
    assert isinstance(late, RetryAfter) and late.seconds == pytest.approx(waits[-1] + 3)
    # Another chat is not held up by that queue.
    lim.check("-200")
    await ft.run(*queued)


def test_check_lets_a_quiet_chat_through_without_queueing():
    ft = FakeTime()
    lim = limiter(ft, max_wait=10)
    for _ in range(5):
        lim.check("-100")  # nothing is booked by a check that passes
    assert lim._chats["-100"].waiting == 0


async def test_pause_after_a_429_holds_the_chat_for_retry_after():
    ft = FakeTime()
    lim = limiter(ft, max_wait=10)
    lim.pause("-100", 30)
    [refused] = await ft.run(_outcome(lim.acquire("-100")))
    assert isinstance(refused, RetryAfter) and refused.seconds == pytest.approx(30)
    calls: list[tuple[float, str | None]] = []
    await ft.run(timed(ft, lim, "user1", calls)())  # other chats are not paused
    assert calls == [(0.0, "user1")]
    ft.now = 30.0
    await ft.run(timed(ft, lim, "-100", calls)())
    assert calls[-1] == (30.0, "-100")


def test_budgets_must_be_positive():
    with pytest.raises(ValueError):
        RateLimiter(0, 20)


async def _outcome(aw: Awaitable[None]) -> RetryAfter | None:
    try:
        await aw
    except RetryAfter as e:
        return e
    return None


async def test_gateway_obeys_a_429_for_that_chat_only():
    """TelegramGateway against the emulator: a 429 is raised as RetryAfter with Telegram's
    retry_after, and the limiter holds that chat (not the others) for that long."""
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    from bot.gateway import TelegramGateway
    from sandbox.telegram import EmulatorClient, TelegramEmulator
    from storage.clock import SystemClock

    emulator = TelegramEmulator(bot_username="gatepass_bot")
    base_url = await emulator.start()
    tg = EmulatorClient(base_url)
    bot = Bot("4343:limit-test", session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))
    try:
        await tg.create_bot("4343:limit-test")
        for uid in (11, 12):
            await tg.create_user(uid, f"User {uid}")
            await tg.send_text(uid, "/start")
        gateway = TelegramGateway(
            bot, "gatepass_bot", SystemClock(), RateLimiter(1000, 6000, max_chat_wait=5)
        )
        await tg.inject_fault("sendMessage", error_code=429, retry_after=40)
        with pytest.raises(RetryAfter) as first:
            await gateway.send("11", "help", {}, "en")
        assert first.value.seconds == 40 and gateway.throttled == 1
        with pytest.raises(RetryAfter) as held:  # held here: Telegram is not asked again
            await gateway.send("11", "help", {}, "en")
        assert 39 < held.value.seconds <= 40
        await gateway.send("12", "help", {}, "en")  # another chat goes out at once
        sent = list(await tg.calls("sendMessage"))
        assert [(c["params"]["chat_id"], c["ok"]) for c in sent] == [("11", False), ("12", True)]
    finally:
        await bot.session.close()
        await tg.close()
        await emulator.stop()
