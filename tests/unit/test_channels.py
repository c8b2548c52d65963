"""Channels' rules: /starlink and /setup @channel arguments, what a channel admin bot may
lack, and Star subscribers recorded from chat_member updates and left to Telegram by our
sweeps and our join guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiogram.types import ChatMemberAdministrator, ChatMemberMember
from aiogram.types import User as TgUser
from sqlalchemy import select
from sqlmodel import col

from billing.ingest import process_notice
from billing.stars import StarsPayment, payment_notice, refund_notice
from bot.commands import ArgError, parse_channel_setup_args, parse_starlink_args
from bot.handlers.channels import channel_rights
from membership.catalog import TELEGRAM_INVITE_MODES, register_group
from membership.channels import (
    STAR_PRICE_MAX,
    StarJoin,
    on_star_left,
    on_star_member,
    on_star_renewed,
    record_star_link,
    star_link_channel,
)
from membership.errors import RuleError
from membership.grants import grant_days
from membership.joins import JoinOutcome, on_member_joined
from membership.lapse import due_reminders, due_removals
from storage.db import Database
from storage.models import ChatGroup, Membership, Outbox, User
from storage.money import Money
from storage.queries import get_or_create_user
from tests.factories import make_order, make_shop

NOW = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)
CHANNEL = "-1005678"
LINK = "https://t.me/+starstarstar1234"
BOB = {"platform_user_id": "2002", "username": "bob", "first_name": "Bob", "language": "en"}


# -- arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "key"),
    [
        ("", "missing_args"),
        ("2", "missing_args"),
        ("x 250XTR", "group_ref_invalid"),
        ("2 250", "starlink_price_invalid"),
        ("2 2.5XTR", "starlink_price_invalid"),
        ("2 250USD", "starlink_price_invalid"),
        ("2 0XTR", "starlink_price_range"),
        ("2 10001XTR", "starlink_price_range"),
        ("2 1e3XTR", "starlink_price_invalid"),
        ("2 -5XTR", "starlink_price_invalid"),
        ("2 250 XTR", "starlink_price_invalid"),
        ("2 250XTR " + "n" * 33, "starlink_name_too_long"),
    ],
)
def test_bad_starlink_args(args: str, key: str) -> None:
    with pytest.raises(ArgError) as e:
        parse_starlink_args(args, STAR_PRICE_MAX)
    assert e.value.key == key


def test_starlink_args() -> None:
    a = parse_starlink_args("#2 250xtr VIP club", STAR_PRICE_MAX)
    assert (a.group_ref, a.stars, a.name) == ("2", 250, "VIP club")
    b = parse_starlink_args("-1005678 10000XTR", STAR_PRICE_MAX)
    assert (b.group_ref, b.stars, b.name) == ("-1005678", 10000, None)


def test_channel_setup_args() -> None:
    a = parse_channel_setup_args("@traders_news single_use", TELEGRAM_INVITE_MODES)
    assert (a.channel, a.mode) == ("@traders_news", "single_use")
    for args, key in [
        ("", "missing_args"),
        ("traders_news", "channel_ref_invalid"),
        ("@ab", "channel_ref_invalid"),
        ("@traders_news nope", "setup_bad_mode"),
        ("@traders_news join_request x", "too_many_args"),
    ]:
        with pytest.raises(ArgError) as e:
            parse_channel_setup_args(args, TELEGRAM_INVITE_MODES)
        assert e.value.key == key, args


def _admin(**rights: bool) -> ChatMemberAdministrator:
    base = dict.fromkeys(
        (
            "can_be_edited",
            "is_anonymous",
            "can_manage_chat",
            "can_delete_messages",
            "can_manage_video_chats",
            "can_restrict_members",
            "can_promote_members",
            "can_change_info",
            "can_invite_users",
            "can_post_stories",
            "can_edit_stories",
            "can_delete_stories",
            "can_send_welcome_messages",
        ),
        False,
    )
    base.update(rights)
    return ChatMemberAdministrator(user=TgUser(id=1, is_bot=True, first_name="bot"), **base)


def test_what_a_channel_admin_bot_may_lack() -> None:
    assert channel_rights(None).missing() == ["admin"]
    member = ChatMemberMember(user=TgUser(id=1, is_bot=True, first_name="bot"))
    assert channel_rights(member).missing() == ["admin"]
    # Telegram reports can_restrict_members true for every channel admin: invite is the one.
    lacking = _admin(can_restrict_members=True, can_post_messages=True)
    assert channel_rights(lacking).missing() == ["can_invite_users"]
    ready = _admin(can_restrict_members=True, can_invite_users=True)
    assert channel_rights(ready).missing() == []


# -- Star subscribers ---------------------------------------------------------------------------


async def _channel(db: Database) -> tuple[User, ChatGroup, ChatGroup]:
    async with db.transaction() as s:
        owner = await get_or_create_user(s, "telegram", "1001", NOW, username="olga")
        channel, _ = await register_group(
            s, owner, "telegram", CHANNEL, "News", NOW, chat_type="channel"
        )
        group, _ = await register_group(s, owner, "telegram", "-1001234", "Club", NOW)
        await record_star_link(s, owner, channel, LINK, "VIP", 250, NOW)
    return owner, channel, group


async def _membership(db: Database) -> Membership | None:
    async with db.session() as s:
        return (await s.execute(select(Membership))).scalar_one_or_none()


async def test_star_links_are_for_channels_only(db: Database) -> None:
    owner, channel, group = await _channel(db)
    async with db.session() as s:
        assert (await star_link_channel(s, owner, str(channel.id), [])).id == channel.id
        with pytest.raises(RuleError) as e:
            await star_link_channel(s, owner, str(group.id), [])
        assert e.value.key == "starlink_channel_only"


async def test_star_join_is_recorded_renewed_and_ended(db: Database) -> None:
    await _channel(db)
    until = NOW + 30 * DAY
    async with db.transaction() as s:
        got = await on_star_member(s, "telegram", CHANNEL, BOB, LINK, False, until, NOW)
    assert got == StarJoin.RECORDED
    m = await _membership(db)
    assert m is not None and (m.status, m.expires_at, m.star_link) == ("active", until, LINK)
    # A join through some other link that is no subscription: the guard decides.
    async with db.transaction() as s:
        other = await on_star_member(
            s, "telegram", CHANNEL, BOB, "https://t.me/+other", False, until, NOW
        )
    assert other == StarJoin.NOT_A_SUBSCRIPTION
    # A renewal moves the end on; an older until_date never shortens it.
    async with db.transaction() as s:
        assert await on_star_renewed(s, "telegram", CHANNEL, "2002", until + 30 * DAY, NOW)
        assert not await on_star_renewed(s, "telegram", CHANNEL, "2002", until, NOW)
    m = await _membership(db)
    assert m is not None and m.expires_at == until + 30 * DAY
    # Telegram removed him (or he left): our record ends, and nothing is queued to remove him.
    async with db.transaction() as s:
        assert await on_star_left(s, "telegram", CHANNEL, "2002", NOW + 61 * DAY)
        assert not await on_star_left(s, "telegram", CHANNEL, "2002", NOW + 61 * DAY)
    m = await _membership(db)
    assert m is not None and m.status == "expired"
    async with db.session() as s:
        kinds = (await s.execute(select(col(Outbox.kind)))).scalars().all()
    assert "remove_member" not in kinds


async def test_a_subscription_link_made_in_the_app_counts_too(db: Database) -> None:
    await _channel(db)
    async with db.transaction() as s:
        got = await on_star_member(
            s, "telegram", CHANNEL, BOB, "https://t.me/+abcdefgh...", True, NOW + 30 * DAY, NOW
        )
    assert got == StarJoin.RECORDED


async def test_longer_paid_access_of_ours_is_kept(db: Database) -> None:
    _, channel, _ = await _channel(db)
    async with db.transaction() as s:
        bob = await get_or_create_user(s, "telegram", "2002", NOW)
        group = await s.get(ChatGroup, channel.id)
        assert group is not None
        await grant_days(s, bob, group, 90, NOW, actor="test", reason="test")
        got = await on_star_member(s, "telegram", CHANNEL, BOB, LINK, False, NOW + 30 * DAY, NOW)
    assert got == StarJoin.KEPT
    m = await _membership(db)
    assert m is not None and m.star_link is None and m.expires_at == NOW + 90 * DAY


async def test_paid_access_takes_over_from_a_star_subscription(db: Database) -> None:
    _, channel, _ = await _channel(db)
    async with db.transaction() as s:
        await on_star_member(s, "telegram", CHANNEL, BOB, LINK, False, NOW + 30 * DAY, NOW)
    async with db.transaction() as s:
        bob = await get_or_create_user(s, "telegram", "2002", NOW)
        group = await s.get(ChatGroup, channel.id)
        assert group is not None
        m = await grant_days(s, bob, group, 30, NOW + DAY, actor="test", reason="test")
    # The Stars' period is kept and ours added; from now on our sweeps end it.
    assert m.star_link is None and m.expires_at == NOW + 60 * DAY


async def test_sweeps_and_guard_leave_star_subscribers_to_telegram(db: Database) -> None:
    await _channel(db)
    async with db.transaction() as s:
        await on_star_member(s, "telegram", CHANNEL, BOB, LINK, False, NOW + 30 * DAY, NOW)
    late = NOW + 40 * DAY
    async with db.session() as s:
        assert (await s.execute(due_removals(late, 24, 10))).scalars().all() == []
        assert (await s.execute(due_reminders(NOW + 28 * DAY, 3, 10))).scalars().all() == []
    # He appears in the channel again while his period runs: a member, not an intruder.
    async with db.transaction() as s:
        got = await on_member_joined(s, "telegram", CHANNEL, "2002", None, NOW + DAY)
    assert got == JoinOutcome.MEMBER


# -- a Star subscriber who also buys a plan -----------------------------------------------------


async def test_a_star_renewal_extends_paid_access_of_ours_that_took_over(db: Database) -> None:
    """Our plan took over from Bob's Star subscription; Telegram keeps renewing it. Each
    renewal he paid Telegram for extends his access: our lapse sweep must not remove him."""
    _, channel, _ = await _channel(db)
    async with db.transaction() as s:
        await on_star_member(s, "telegram", CHANNEL, BOB, LINK, False, NOW + 30 * DAY, NOW)
    async with db.transaction() as s:
        bob = await get_or_create_user(s, "telegram", "2002", NOW)
        group = await s.get(ChatGroup, channel.id)
        assert group is not None
        await grant_days(s, bob, group, 30, NOW + DAY, actor="test", reason="test")
    async with db.transaction() as s:
        assert not await on_star_renewed(s, "telegram", CHANNEL, "2002", NOW + 60 * DAY, NOW)
        assert await on_star_renewed(s, "telegram", CHANNEL, "2002", NOW + 90 * DAY, NOW)
    m = await _membership(db)
    assert m is not None
    assert (m.star_link, m.expires_at, m.star_until) == (None, NOW + 90 * DAY, NOW + 90 * DAY)
    async with db.session() as s:
        assert (await s.execute(due_removals(NOW + 80 * DAY, 24, 10))).scalars().all() == []
    # He leaves: Telegram's paid time is over; ours goes on, to its own end.
    async with db.transaction() as s:
        assert not await on_star_left(s, "telegram", CHANNEL, "2002", NOW + 70 * DAY)
    m = await _membership(db)
    assert m is not None and (m.status, m.star_until) == ("active", None)


async def test_a_refund_of_our_plan_keeps_what_telegram_was_paid_for(db: Database) -> None:
    """Bob subscribed through the channel's Star link, then bought a Stars plan of ours for
    the same channel, and the plan is refunded: our time goes, his Telegram-paid period
    stays (no removal), and a later Telegram renewal still counts."""
    shop = await make_shop(db, NOW, prices=(Money(250, "XTR"),))
    chat = shop.group.chat_id
    buyer = {"platform_user_id": shop.buyer.platform_user_id, "language": "en"}
    async with db.transaction() as s:
        star = await on_star_member(s, "telegram", chat, buyer, LINK, True, NOW + 30 * DAY, NOW)
    assert star == StarJoin.RECORDED
    order = await make_order(db, shop, NOW, provider="stars", price=Money(250, "XTR"))
    paid = payment_notice(StarsPayment("stxtP", order.order_no, 250, "XTR"))
    assert (await process_notice(db, "stars", paid, NOW + DAY)).outcome.value == "granted"
    m = await _membership(db)
    assert m is not None and (m.star_link, m.expires_at) == (None, NOW + 60 * DAY)
    back = refund_notice("stxtP", order.order_no, 250, "XTR")
    assert (await process_notice(db, "stars", back, NOW + 2 * DAY)).outcome.value == "recorded"
    m = await _membership(db)
    assert m is not None
    assert (m.status, m.expires_at, m.auto_renew) == ("active", NOW + 30 * DAY, False)
    async with db.session() as s:
        kinds = (await s.execute(select(col(Outbox.kind)))).scalars().all()
    assert "remove_member" not in kinds
    async with db.transaction() as s:
        assert await on_star_renewed(
            s, "telegram", chat, shop.buyer.platform_user_id, NOW + 60 * DAY, NOW + 30 * DAY
        )
    m = await _membership(db)
    assert m is not None and m.expires_at == NOW + 60 * DAY
