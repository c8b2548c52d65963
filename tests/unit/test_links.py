"""/link (membership/links.py): a one-time code made on one platform binds the two accounts
when it is sent from the other. Every outcome; a refusal changes nothing; a code binds once,
also when two binds race (on PostgreSQL for real); linked owners manage both accounts' groups."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlmodel import col

from membership.catalog import add_plan, find_managed_group, owner_groups, owner_plans
from membership.errors import RuleError
from membership.links import (
    ALPHABET,
    CODE_LENGTH,
    BindResult,
    IssuedCode,
    LinkOutcome,
    bind_link,
    issue_link_code,
    linked_account,
)
from storage.db import Database
from storage.models import AccountLink, AuditLog, LinkCode, User
from storage.money import Money
from storage.queries import get_or_create_user


async def user(db: Database, platform: str, ident: str, now: datetime, name: str = "") -> User:
    async with db.transaction() as s:
        return await get_or_create_user(s, platform, ident, now, username=name or None)


async def issue(db: Database, who: User, now: datetime) -> IssuedCode:
    async with db.transaction() as s:
        return await issue_link_code(s, await _fresh(s, who), now)


async def bind(db: Database, who: User, code: str, now: datetime) -> BindResult:
    async with db.transaction() as s:
        return await bind_link(s, await _fresh(s, who), code, now)


async def _fresh(s, who: User) -> User:
    u = await s.get(User, who.id)
    assert u is not None
    return u


async def links(db: Database) -> list[tuple[int, int]]:
    async with db.session() as s:
        return [
            (r.telegram_user_id, r.wechat_user_id)
            for r in (await s.execute(select(AccountLink))).scalars()
        ]


async def count(db: Database, model, *where) -> int:
    async with db.session() as s:
        return int(
            (await s.execute(select(func.count()).select_from(model).where(*where))).scalar()
        )


async def test_a_code_is_eight_unambiguous_characters_for_ten_minutes_and_replaces_the_last(
    db: Database, now: datetime
):
    tg = await user(db, "telegram", "2000", now)
    first = await issue(db, tg, now)
    assert len(first.code) == CODE_LENGTH and set(first.code) <= set(ALPHABET)
    assert not set("01OIL") & set(ALPHABET)
    assert first.expires_at == now + timedelta(minutes=10)
    second = await issue(db, tg, now)
    assert second.code != first.code
    assert await count(db, LinkCode) == 1  # the unused first code is gone
    wx = await user(db, "wechat", "wxid_a", now)
    assert (await bind(db, wx, first.code, now)).outcome is LinkOutcome.UNKNOWN
    assert await links(db) == []


async def test_a_code_from_the_other_platform_binds_both_ways_once(db: Database, now: datetime):
    tg = await user(db, "telegram", "2000", now, "bob")
    wx = await user(db, "wechat", "wxid_bob", now, "Bob")
    code = (await issue(db, wx, now)).code
    # Typed by hand: spaces around it and lower case still bind.
    result = await bind(db, tg, f"  {code.lower()} ", now + timedelta(minutes=9))
    assert result.outcome is LinkOutcome.BOUND and result.moved == 0
    assert result.other is not None and result.other.id == wx.id
    assert await links(db) == [(tg.id, wx.id)]
    async with db.session() as s:
        assert (await linked_account(s, tg.id or 0)).id == wx.id
        assert (await linked_account(s, wx.id or 0)).id == tg.id
        assert (
            await s.execute(select(AuditLog).where(AuditLog.action == "link.bind"))
        ).scalar_one().target == f"user:{wx.id}"
    # The same code again: used; nothing changes.
    assert (await bind(db, tg, code, now)).outcome is LinkOutcome.USED
    # A linked user asks for a code: refused, naming the platform of the other account.
    with pytest.raises(RuleError) as e:
        await issue(db, tg, now)
    assert (e.value.key, e.value.params) == ("link_already", {"platform": "wechat"})


async def test_every_refusal_says_why_and_changes_nothing(db: Database, now: datetime):
    tg = await user(db, "telegram", "2000", now)
    tg2 = await user(db, "telegram", "2001", now)
    wx = await user(db, "wechat", "wxid_a", now)
    wx2 = await user(db, "wechat", "wxid_b", now)
    code = (await issue(db, tg, now)).code
    for text in ("", "   ", "ABC", "ABCDEFGH1", "ABCDEFG0", "ZZZZZZZZ", code + "X"):
        assert (await bind(db, wx, text, now)).outcome is LinkOutcome.UNKNOWN, text
    # Made on Telegram, sent on Telegram (by its maker or anyone else).
    assert (await bind(db, tg, code, now)).outcome is LinkOutcome.OWN_PLATFORM
    assert (await bind(db, tg2, code, now)).outcome is LinkOutcome.OWN_PLATFORM
    # Too late: ten minutes passed.
    late = now + timedelta(minutes=10)
    assert (await bind(db, wx, code, late)).outcome is LinkOutcome.EXPIRED
    assert await links(db) == []
    async with db.session() as s:
        row = (await s.execute(select(LinkCode))).scalar_one()
    assert row.used_at is None  # no refusal spent the code
    assert (await bind(db, wx, code, now)).outcome is LinkOutcome.BOUND
    # Either side linked already: a new code cannot bind them to someone else.
    code2 = (await issue(db, tg2, now)).code
    refused = await bind(db, wx, code2, now)
    assert refused.outcome is LinkOutcome.ALREADY_LINKED
    assert refused.other is not None and refused.other.id == tg.id
    code3 = (await issue(db, wx2, now)).code
    assert (await bind(db, tg, code3, now)).outcome is LinkOutcome.ALREADY_LINKED
    assert await links(db) == [(tg.id, wx.id)]
    assert await count(db, LinkCode, LinkCode.used_at.is_not(None)) == 1
    # A day after their end, codes are pruned when anyone asks for a new one.
    await issue(db, wx2, now + timedelta(days=1, minutes=11))
    async with db.session() as s:
        assert [c.user_id for c in (await s.execute(select(LinkCode))).scalars()] == [wx2.id]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=st.text(max_size=12))
async def test_no_text_but_the_code_binds(db: Database, now: datetime, text: str):
    tg = await user(db, "telegram", "2000", now)
    wx = await user(db, "wechat", "wxid_a", now)
    async with db.transaction() as s:
        made = await s.get(LinkCode, 1)
        if made is None:
            await issue_link_code(s, await _fresh(s, tg), now)
    async with db.session() as s:
        code = (await s.execute(select(col(LinkCode.code)))).scalar_one()
    if text.strip().upper() == code:
        return
    assert (await bind(db, wx, text, now)).outcome is LinkOutcome.UNKNOWN
    assert await links(db) == []


async def test_two_binds_of_one_code_at_once_bind_once(db: Database, now: datetime):
    """Two WeChat users send the same code at the same moment: one binds, one hears it was
    used (PostgreSQL: the compare-and-set on used_at decides, not the read before it)."""
    tg = await user(db, "telegram", "2000", now)
    wx1 = await user(db, "wechat", "wxid_a", now)
    wx2 = await user(db, "wechat", "wxid_b", now)
    code = (await issue(db, tg, now)).code
    results = await asyncio.gather(bind(db, wx1, code, now), bind(db, wx2, code, now))
    assert sorted(r.outcome for r in results) == sorted([LinkOutcome.BOUND, LinkOutcome.USED])
    assert len(await links(db)) == 1


async def test_one_account_bound_by_two_codes_at_once_links_once(db: Database, now: datetime):
    """One WeChat user sends two Telegram users' codes at once: one link, the other bind is
    refused as already linked and leaves its code unspent."""
    tg1 = await user(db, "telegram", "2000", now)
    tg2 = await user(db, "telegram", "2001", now)
    wx = await user(db, "wechat", "wxid_a", now)
    c1, c2 = (await issue(db, tg1, now)).code, (await issue(db, tg2, now)).code
    results = await asyncio.gather(bind(db, wx, c1, now), bind(db, wx, c2, now))
    assert sorted(r.outcome for r in results) == sorted(
        [LinkOutcome.BOUND, LinkOutcome.ALREADY_LINKED]
    )
    assert len(await links(db)) == 1
    assert await count(db, LinkCode, LinkCode.used_at.is_not(None)) == 1


async def test_linked_owners_manage_the_groups_of_both_accounts(db: Database, now: datetime):
    from membership.catalog import register_group

    owner = await user(db, "telegram", "1000", now, "owner")
    owner_wx = await user(db, "wechat", "wxid_owner", now, "Owner")
    async with db.transaction() as s:
        group, _ = await register_group(
            s, await _fresh(s, owner), "telegram", "-1001", "TG", now, invite_mode="single_use"
        )
        room, _ = await register_group(
            s, await _fresh(s, owner_wx), "wechat", "1@chatroom", "Room", now, "add_member"
        )
    async with db.session() as s:
        with pytest.raises(RuleError) as e:
            await find_managed_group(s, await _fresh(s, owner), str(room.id), [])
        assert e.value.key == "group_not_yours"
    code = (await issue(db, owner_wx, now)).code
    assert (await bind(db, owner, code, now)).outcome is LinkOutcome.BOUND
    async with db.transaction() as s:
        tg_owner = await _fresh(s, owner)
        found = await find_managed_group(s, tg_owner, str(room.id), [])
        assert found.id == room.id
        assert [g.id for g in await owner_groups(s, tg_owner)] == [group.id, room.id]
        # A bundle of both, made from the Telegram side, is the WeChat side's plan too.
        plan = await add_plan(s, tg_owner, [group, found], 30, [Money(990, "CNY")], "Both", now)
    async with db.session() as s:
        wx_owner = await _fresh(s, owner_wx)
        assert [g.id for g in await owner_groups(s, wx_owner)] == [group.id, room.id]
        views = await owner_plans(s, wx_owner)
        assert [v.plan.id for v in views] == [plan.id]
        assert [g.id for g in views[0].groups] == [group.id, room.id]
        assert (await find_managed_group(s, wx_owner, str(group.id), [])).id == group.id
        # Someone else still may not.
        stranger = await get_or_create_user(s, "wechat", "wxid_x", now)
        with pytest.raises(RuleError):
            await find_managed_group(s, stranger, str(group.id), [])


async def test_linked_owners_see_one_business_in_stats_and_refunds(db: Database, now: datetime):
    from billing.order_refunds import request_order_refund
    from membership.catalog import register_group
    from membership.reports import owner_stats
    from tests.factories import Shop, make_order

    owner = await user(db, "telegram", "1000", now, "owner")
    owner_wx = await user(db, "wechat", "wxid_owner", now, "Owner")
    buyer = await user(db, "telegram", "2000", now, "buyer")
    async with db.transaction() as s:
        tg_owner = await _fresh(s, owner)
        group, _ = await register_group(
            s, tg_owner, "telegram", "-1001", "TG", now, invite_mode="single_use"
        )
        room, _ = await register_group(
            s, await _fresh(s, owner_wx), "wechat", "1@chatroom", "Room", now, "add_member"
        )
        plan = await add_plan(s, tg_owner, [group], 30, [Money(990, "CNY")], "TG only", now)
    order = await make_order(db, Shop(owner, buyer, group, plan), now, provider="stripe")

    async def refund_refusal(who: User) -> str:
        async with db.transaction() as s:
            with pytest.raises(RuleError) as e:
                await request_order_refund(
                    s, await _fresh(s, who), order.order_no, now, refundable={"stripe"}
                )
            return e.value.key

    async def stats_groups(who: User) -> list[int | None]:
        async with db.session() as s:
            return [g.id for g, _n in (await owner_stats(s, who.id, now)).groups]

    # Not linked: the WeChat account does not know the order (nor sees the Telegram group).
    assert await refund_refusal(owner_wx) == "order_refund_unknown"
    assert await stats_groups(owner_wx) == [room.id]
    code = (await issue(db, owner, now)).code
    assert (await bind(db, owner_wx, code, now)).outcome is LinkOutcome.BOUND
    # Linked: its owner's own order (refused only because it is not paid yet).
    assert await refund_refusal(owner_wx) == "order_refund_not_paid"
    assert await stats_groups(owner_wx) == await stats_groups(owner) == [group.id, room.id]
    stranger = await user(db, "wechat", "wxid_x", now)
    assert await refund_refusal(stranger) == "order_refund_unknown"
