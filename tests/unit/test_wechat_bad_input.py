"""Odd input from WeChat users: every message gets a one-line answer (with the usage where
there is one) and changes nothing, never an exception (which the dispatcher would swallow,
leaving the sender with no answer at all)."""

from __future__ import annotations

import pytest

from bot.i18n import t
from bot.owner_actions import platform_key
from membership.catalog import add_plan, register_group
from storage.money import Money
from storage.queries import get_or_create_user
from tests.factories import MovableClock
from tests.qr_provider import QrProviderDouble
from tests.wechat_talk import OWNER, ROOM, Talk

FULL_WIDTH_ONE = "\uff11"  # what a Chinese keyboard types in full-width mode


@pytest.fixture
def talk(db, now) -> Talk:
    return Talk(db, MovableClock(now), {"wechatpay": QrProviderDouble()})


async def make_room(db, now) -> int:
    async with db.transaction() as s:
        owner = await get_or_create_user(s, "wechat", OWNER, now, first_name="Owner")
        group, _ = await register_group(
            s, owner, "wechat", ROOM, "Paid room", now, invite_mode="add_member"
        )
        await add_plan(s, owner, [group], 30, [Money(2990, "CNY")], "Monthly", now)
        return group.id or 0


async def test_a_number_longer_than_python_reads_is_out_of_range(db, now, talk):
    await make_room(db, now)
    await talk.text("菜单")
    # Python refuses int() of more than 4300 digits; WeChat carries texts that long.
    assert await talk.text("9" * 5000) == t("wechat_pick_range", "zh", count=1)
    assert await talk.text(FULL_WIDTH_ONE * 5000) == t("wechat_pick_range", "zh", count=1)
    # The list is still there, and a full-width digit picks from it.
    assert (await talk.text(FULL_WIDTH_ONE)).startswith(
        t("wechat_pick_plan", "zh", group="Paid room")
    )


async def test_a_group_number_too_big_for_the_id_column_is_not_found(db, now, talk):
    await make_room(db, now)
    # 20 digits pass the parser; PostgreSQL's integer id refused the query (DataError).
    for ref in ("99999999999999999999", "#4294967296"):
        said = await talk.text(f"/members {ref}", OWNER)
        assert said == "\n".join(
            [
                t("group_not_found", "zh", ref=ref.lstrip("#")),
                t(platform_key("usage_members", "wechat"), "zh"),
            ]
        )


async def test_a_duration_longer_than_python_reads_is_too_long(db, now, talk):
    group_id = await make_room(db, now)
    days = "9" * 5000
    said = await talk.text(f"/addplan {group_id} {days}d 10CNY", OWNER)
    reason, usage = said.split("\n", 1)
    # (the echoed duration is cut short by the catalog)
    assert reason.endswith(t("duration_too_long", "zh", text="x").removeprefix("“x”"))
    assert usage.startswith(t("usage_addplan", "zh", prices="29.90CNY", currencies="CNY")[:10])


async def test_a_full_width_space_or_a_new_line_separates_a_command_from_its_words(talk):
    # A Chinese keyboard types U+3000 in full-width mode; a phone puts words on a new line.
    assert await talk.text("/link\u3000NOSUCHCODE") == t("link_code_unknown", "zh")
    assert await talk.text("/link\nNOSUCHCODE") == t("link_code_unknown", "zh")
    assert await talk.text("语言\u3000english") == t("language_set", "en")


async def test_a_name_longer_than_the_column_still_gets_answers(db, talk):
    # The puppet's name for a contact (a WeCom name, a remark) is not WeChat's 16 characters
    # at most: PostgreSQL refused the user row, and every message of theirs failed.
    name = "名" * 300
    assert await talk.text("帮助", "wxid_longname", name) == t("wechat_help", "zh")


async def test_nul_characters_are_dropped_not_fatal(db, now, talk):
    # PostgreSQL stores no NUL in text: a NUL in a name, a title or a room's topic failed
    # the whole message, unanswered.
    group_id = await make_room(db, now)
    said = await talk.text(f"/addplan {group_id} 30d 10CNY Ti\x00tle", OWNER, "Own\x00er")
    assert said.startswith(
        t(
            "wechat_plan_added",
            "zh",
            plan_id=2,
            title="Title",
            duration="30d",
            recurring="",
            prices="10.00 CNY",
            groups=f"#{group_id} Paid room",
            buy_link=t("wechat_buy_hint", "zh"),
        )
    )
    [reply] = await talk.in_room("/setup", topic="Paid\x00 room 2")
    assert "Paid room 2" in (reply.text or "")


async def test_setup_addressed_to_the_bot_by_an_at_mention(db, talk):
    # In a room WeChat users write "@Name" then U+2005 before their words.
    [reply] = await talk.in_room("@Gatepass\u2005/setup")
    assert reply.to == ROOM and reply.text and "Paid room" in reply.text
    [again] = await talk.in_room("@Gate Pass\u2005 @Bob\u2005/setup")  # a name with a space
    assert again.to == ROOM and again.text and "Paid room" in again.text
    [typed] = await talk.in_room("@Gatepass /setup")  # the mention typed by hand
    assert typed.to == ROOM
    assert await talk.in_room("@Gatepass\u2005hello /setup") == []
