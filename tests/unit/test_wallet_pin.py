"""The wallet PIN (billing/wallet_pin.py) as /pin and the checkout's PIN prompt use it: set,
checked, five wrong tries lock spending for fifteen minutes, a right one resets the count."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from billing.wallet import WalletRules
from billing.wallet_pin import PinCheck, PinResult, check_pin, clear_pin, set_pin
from membership.errors import RuleError
from storage.models import WalletPin
from storage.queries import get_or_create_user

RULES = WalletRules(
    points_per_unit={"CNY": 10}, points_min=10, points_cap_percent=50, earn_points_per_unit=1
)


async def _user(db, now) -> int:
    async with db.transaction() as s:
        return (await get_or_create_user(s, "telegram", str(secrets.randbelow(10**9)), now)).id


async def _check(db, user, pin, now) -> PinResult:
    async with db.transaction() as s:
        return await check_pin(s, user, pin, RULES, now)


async def test_a_pin_is_stored_hashed_and_checked(db, now):
    user = await _user(db, now)
    assert await _check(db, user, "1234", now) == PinResult(PinCheck.NOT_SET, 5)
    async with db.transaction() as s:
        await set_pin(s, user, "482113", now)
    async with db.session() as s:
        stored = (await s.execute(select(col(WalletPin.pin_hash)))).scalar_one()
    assert stored.startswith("$argon2id$") and "482113" not in stored
    assert await _check(db, user, "482113", now) == PinResult(PinCheck.OK, 5)
    assert await _check(db, user, "482114", now) == PinResult(PinCheck.WRONG, 4)


# "\uff11\uff12\uff13\uff14" is 1234 in full-width digits, which str.isdigit() accepts.
@pytest.mark.parametrize(
    "bad", ["123", "1234567", "12a4", "", " 1234", "\uff11\uff12\uff13\uff14", "12.5"]
)
async def test_a_pin_must_be_4_to_6_digits(db, now, bad):
    user = await _user(db, now)
    async with db.transaction() as s:
        with pytest.raises(RuleError) as refused:
            await set_pin(s, user, bad, now)
    assert refused.value.key == "pin_bad"
    assert await _check(db, user, bad, now) == PinResult(PinCheck.NOT_SET, 5)


async def test_five_wrong_tries_lock_for_fifteen_minutes(db, now):
    user = await _user(db, now)
    async with db.transaction() as s:
        await set_pin(s, user, "2468", now)
    tries = [await _check(db, user, "1111", now + timedelta(seconds=i)) for i in range(4)]
    assert [(t.status, t.tries_left) for t in tries] == [(PinCheck.WRONG, n) for n in (4, 3, 2, 1)]
    fifth = now + timedelta(seconds=4)
    until = fifth + timedelta(minutes=15)
    assert await _check(db, user, "1111", fifth) == PinResult(PinCheck.LOCKED, 0, until)
    # Locked: even the right PIN is refused, and the lock does not move.
    just_before = until - timedelta(seconds=1)
    assert await _check(db, user, "2468", just_before) == PinResult(PinCheck.LOCKED, 0, until)
    # The lock ran out: a fresh set of tries, and the right PIN works.
    assert await _check(db, user, "0000", until) == PinResult(PinCheck.WRONG, 4)
    assert await _check(db, user, "2468", until) == PinResult(PinCheck.OK, 5)


async def test_a_right_pin_resets_the_count(db, now):
    user = await _user(db, now)
    async with db.transaction() as s:
        await set_pin(s, user, "9753", now)
    for _ in range(4):
        await _check(db, user, "0000", now)
    assert await _check(db, user, "9753", now) == PinResult(PinCheck.OK, 5)
    assert await _check(db, user, "0000", now) == PinResult(PinCheck.WRONG, 4)


async def test_a_new_pin_replaces_the_old_and_clears_the_lock(db, now):
    user = await _user(db, now)
    async with db.transaction() as s:
        await set_pin(s, user, "1357", now)
    for _ in range(5):
        await _check(db, user, "0000", now)
    async with db.transaction() as s:
        await set_pin(s, user, "8642", now)
    assert (await _check(db, user, "1357", now)).status is PinCheck.WRONG
    assert (await _check(db, user, "8642", now)).status is PinCheck.OK


async def test_clearing_the_pin(db, now):
    user = await _user(db, now)
    async with db.transaction() as s:
        assert not await clear_pin(s, user, now)
        await set_pin(s, user, "1357", now)
    async with db.transaction() as s:
        assert await clear_pin(s, user, now)
    assert (await _check(db, user, "1357", now)).status is PinCheck.NOT_SET


async def test_wrong_tries_at_the_same_moment_all_count(db, now):
    user = await _user(db, now)
    async with db.transaction() as s:
        await set_pin(s, user, "5555", now)

    results = await asyncio.gather(*(_check(db, user, f"000{n}", now) for n in range(5)))

    assert sorted(r.tries_left for r in results) == [0, 1, 2, 3, 4]
    assert (await _check(db, user, "5555", now)).status is PinCheck.LOCKED
