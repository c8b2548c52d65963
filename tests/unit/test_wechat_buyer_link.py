"""`/link` on WeChat: a code for the bot on Telegram, and `/link CODE` with a code made there
(membership.links), every outcome answered with its one line."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from bot.i18n import t
from membership.links import issue_link_code
from storage.models import AccountLink, LinkCode, User
from storage.queries import get_or_create_user
from tests.factories import MovableClock
from tests.qr_provider import QrProviderDouble
from tests.wechat_talk import Talk

ALICE, BOB = "wxid_alice", "wxid_bob"


@pytest.fixture
def clock(now) -> MovableClock:
    return MovableClock(now)


@pytest.fixture
def talk(db, clock) -> Talk:
    return Talk(db, clock, {"wechatpay": QrProviderDouble()})


async def telegram_code(db, now, user_id: str = "2000") -> str:
    async with db.transaction() as s:
        user = await get_or_create_user(s, "telegram", user_id, now, username="alice_tg")
        return (await issue_link_code(s, user, now)).code


async def links(db) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(AccountLink))).scalar_one())


async def test_link_gives_a_code_for_telegram(db, talk):
    said = await talk.text("/link")
    async with db.session() as s:
        [(code, user)] = (
            await s.execute(
                select(LinkCode, User).join(User, col(User.id) == col(LinkCode.user_id))
            )
        ).all()
    assert user.platform_user_id == ALICE
    assert said == t("link_code_issued", "zh", code=code.code, minutes=10, platform="telegram")


async def test_a_telegram_code_binds_once(db, now, talk):
    code = await telegram_code(db, now)
    said = await talk.text(f"/link {code.lower()}")
    assert said == t("link_bound", "zh", platform="telegram", name="@alice_tg (2000)", moved=0)
    assert await links(db) == 1
    # Used: by anyone, again.
    assert await talk.text(f"/link {code}", BOB) == t("link_code_used", "zh")
    # Linked already: no new code.
    assert await talk.text("/link") == t("link_already", "zh", platform="telegram")
    assert await links(db) == 1


async def test_bad_codes_each_get_their_line(db, now, talk, clock):
    assert await talk.text("/link ZZZZZZZZ") == t("link_code_unknown", "zh")
    assert await talk.text("/link two words") == t("link_code_unknown", "zh")
    # Made on WeChat: it must be sent on Telegram.
    await talk.text("/link", BOB)
    async with db.session() as s:
        bobs = (await s.execute(select(col(LinkCode.code)))).scalar_one()
    assert await talk.text(f"/link {bobs}") == t("link_own_platform", "zh")
    code = await telegram_code(db, now)
    clock.t = now + timedelta(minutes=11)
    assert await talk.text(f"/link {code}") == t("link_code_expired", "zh")
    assert await links(db) == 0
