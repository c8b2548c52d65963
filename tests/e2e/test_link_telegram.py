"""/link on Telegram, through the real service and the Bot API emulator: a code to send to the
bot on WeChat; a code made on WeChat binds; bad codes get one line with the usage and change
nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlmodel import col

from membership.links import issue_link_code
from storage.models import AccountLink, LinkCode, User
from storage.queries import get_or_create_user
from tests.e2e.conftest import start_world, stop_world
from tests.e2e.world import BUYER, STRANGER, World


@pytest.fixture
async def world(db_url: tuple[str, str | None]) -> AsyncIterator[World]:
    w, emulator = await start_world(db_url)
    try:
        yield w
    finally:
        await stop_world(w, emulator)


def _text(needle: str):
    return lambda m: needle in (m.text or "")


async def wechat_code(world: World, contact: str, name: str) -> str:
    """What /link gives a WeChat user (the WeChat conversation calls the same service)."""
    async with world.db.transaction() as s:
        user = await get_or_create_user(s, "wechat", contact, world.clock.now(), username=name)
        return (await issue_link_code(s, user, world.clock.now())).code


async def test_link_gives_a_code_for_wechat_and_binds_a_code_from_wechat(world: World):
    reply = await world.ask(BUYER, "/link", match=_text("link code"))
    found = re.search(r"Your link code: ([A-Z0-9]{8})\n", reply.text or "")
    assert found, reply.text
    assert f"Send /link {found.group(1)} to me on WeChat within 10 minutes" in reply.text
    (row,) = await world.rows(LinkCode)
    assert row.code == found.group(1)
    # Sent back on Telegram (by anyone): made here, so it must go to WeChat.
    own = await world.ask(STRANGER, f"/link {row.code}", match=_text("this platform"))
    assert own.text == (
        "That code was made on this platform: send /link CODE to me on the other platform instead."
    )
    code = await wechat_code(world, "wxid_buyer", "Buyer")
    bound = await world.ask(BUYER, f"/link {code.lower()}", match=_text("Linked"))
    assert bound.text.startswith("Linked with your WeChat account @Buyer (wxid_buyer)."), bound.text
    (link,) = await world.rows(AccountLink)
    (buyer,) = await world.rows(User, col(User.platform_user_id) == str(BUYER))
    assert link.telegram_user_id == buyer.id
    again = await world.ask(BUYER, "/link", match=_text("already linked"))
    assert again.text == "This account is already linked to a WeChat account."
    used = await world.ask(STRANGER, f"/link {code}", match=_text("used already"))
    assert used.text.startswith("That link code was used already.")
    helped = await world.ask(BUYER, "/help", match=_text("/start"))
    assert "/link — link your WeChat account" in (helped.text or "")


async def test_a_bad_code_gets_one_line_with_the_usage_and_changes_nothing(world: World):
    for text in ("/link NOTACODE", "/link ABCD EFGH", "/link ZZZZZZZZ", "/link 你好"):
        reply = await world.ask(BUYER, text, match=_text("Usage:"))
        assert reply.text == (
            "That is not a link code I know. Usage: /link (get a code here) or /link CODE "
            "(a code from the other platform)."
        ), (text, reply.text)
    assert await world.count(AccountLink) == 0 and await world.count(LinkCode) == 0
    # Too late: a WeChat code ten minutes old.
    code = await wechat_code(world, "wxid_late", "Late")
    world.clock.advance(timedelta(minutes=10))
    late = await world.ask(BUYER, f"/link {code}", match=_text("expired"))
    assert late.text.startswith("That link code has expired (a code lasts 10 minutes).")
    assert await world.count(AccountLink) == 0
