"""A room's owner on WeChat: /setup in the room (and every refusal), then /addplan, /plans,
/members, /grant, /revoke, /stats, /refund, /guard in private, with Telegram's parsers, rules
and one-line refusals (reason, then usage; nothing changed), in Chinese and English."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from bot.commands import ArgError, parse_user_ref
from bot.i18n import t
from bot.wechat.events import Outgoing
from membership.admin import UserRef
from membership.catalog import register_group
from storage.models import AuditLog, ChatGroup, Membership, Plan, User
from storage.queries import get_or_create_user
from tests.factories import MovableClock
from tests.qr_provider import QrProviderDouble
from tests.wechat_talk import BOT, OWNER, ROOM, Talk

ALICE, BOB = "wxid_alice", "wxid_bob"


@pytest.fixture
def talk(db, now) -> Talk:
    return Talk(db, MovableClock(now), {"wechatpay": QrProviderDouble()})


async def groups(db) -> list[ChatGroup]:
    async with db.session() as s:
        return list((await s.execute(select(ChatGroup).order_by(col(ChatGroup.id)))).scalars())


async def count(db, model) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


async def setup_room(talk: Talk) -> None:
    [reply] = await talk.in_room("/setup")
    assert reply.to == ROOM


def usage(key: str, lang: str = "zh", **params) -> str:
    return t(key, lang, **params)


async def test_setup_registers_the_room_and_says_what_next(db, talk):
    [reply] = await talk.in_room("/setup")
    [group] = await groups(db)
    assert (group.platform, group.chat_id, group.title) == ("wechat", ROOM, "Paid room")
    assert (group.invite_mode, group.guard, group.chat_type) == ("add_member", "report", "group")
    async with db.session() as s:
        owner = await s.get(User, group.owner_user_id)
    assert owner is not None and (owner.platform, owner.platform_user_id) == ("wechat", OWNER)
    assert reply == Outgoing(
        to=ROOM,
        text=t(
            "wechat_setup_ok",
            "zh",
            group="Paid room",
            group_id=group.id,
            prices="29.90CNY",
            guard=t("guard_report", "zh"),
        ),
    )
    # Again, after the room was renamed: refreshed, still one room, the guard kept.
    group.guard = "remove"
    async with db.transaction() as s:
        await s.merge(group)
    [again] = await talk.in_room("/setup", topic="Paid room 2")
    [group] = await groups(db)
    assert group.title == "Paid room 2" and group.guard == "remove"
    assert again.text == t(
        "wechat_setup_refreshed",
        "zh",
        group="Paid room 2",
        group_id=group.id,
        guard=t("guard_remove", "zh"),
    )


async def test_setup_refusals_say_exactly_what_is_missing(db, talk):
    assert await talk.in_room("/setup", ALICE) == [
        Outgoing(to=ROOM, text=t("wechat_setup_not_owner", "zh"))
    ]
    assert await talk.in_room("/setup", admins=()) == [
        Outgoing(to=ROOM, text=t("wechat_setup_bot_not_admin", "zh"))
    ]
    assert await talk.in_room("/setup", admins=("wxid_someone",)) == [
        Outgoing(to=ROOM, text=t("wechat_setup_bot_not_admin", "zh"))
    ]
    assert await groups(db) == []
    # The bot owning the room is enough (the sender must still be its owner).
    [ok] = await talk.in_room("/setup", BOT, owner=BOT, admins=())
    assert ok.text is not None and ok.text.startswith("Paid room")
    # A room someone else registered: refused, unchanged.
    [other] = await talk.in_room("/setup", OWNER, owner=OWNER)
    assert other.text == t("setup_other_owner", "zh")
    async with db.session() as s:
        bot = (await s.execute(select(User).where(col(User.platform_user_id) == BOT))).scalar_one()
    assert [g.owner_user_id for g in await groups(db)] == [bot.id]
    assert await talk.text("/setup", OWNER) == t("wechat_setup_room_only", "zh")


async def test_addplan_and_plans(db, talk):
    assert await talk.text("/plans", OWNER) == t("wechat_plans_none", "zh")
    await setup_room(talk)
    said = await talk.text("/addplan 1 30d 29.90CNY 月度会员", OWNER)
    async with db.session() as s:
        [plan] = list((await s.execute(select(Plan))).scalars())
    assert plan.title == "月度会员" and plan.duration_days == 30
    assert said == t(
        "wechat_plan_added",
        "zh",
        plan_id=plan.id,
        title="月度会员",
        duration="30d",
        recurring="",
        prices="29.90 CNY",
        groups="#1 Paid room",
        buy_link=t("wechat_buy_hint", "zh"),
    )
    listed = (await talk.text("/plans", OWNER)).splitlines()
    assert listed == [
        t("plans_group", "zh", group_id=1, group="Paid room", mode="add_member"),
        t(
            "plans_plan",
            "zh",
            plan_id=plan.id,
            title="月度会员",
            duration="30 天",
            recurring="",
            prices="29.90 CNY",
        ),
    ]


@pytest.mark.parametrize(
    "args,key,params",
    [
        ("", "missing_args", {}),
        ("1 30d", "missing_args", {}),
        ("x 30d 29.90CNY", "group_ref_invalid", {"ref": "x"}),
        ("1 3x 29.90CNY", "duration_invalid", {"text": "3x"}),
        ("9 30d 29.90CNY", "group_not_found", {"ref": "9"}),
        (
            "1 30d 4.99USD",
            "currency_not_payable",
            {"currency": "USD", "currencies": "CNY"},
        ),
    ],
)
async def test_addplan_refusals_are_one_line_and_the_usage(db, talk, args, key, params):
    await setup_room(talk)
    said = await talk.text(f"/addplan {args}".strip(), OWNER)
    usage_text = t("usage_addplan", "zh", prices="29.90CNY", currencies="CNY")
    assert said == f"{t(key, 'zh', **params)}\n{usage_text}"
    assert await count(db, Plan) == 0


async def test_a_room_of_another_owner_is_not_yours(db, talk):
    await setup_room(talk)
    said = await talk.text("/addplan 1 30d 29.90CNY", BOB, "Bob")
    assert said.splitlines()[0] == t("group_not_yours", "zh", ref="1")
    said = await talk.text("/members 1", BOB, "Bob")
    assert said == f"{t('group_not_yours', 'zh', ref='1')}\n{t('usage_members', 'zh')}"
    assert await count(db, Plan) == 0


async def test_grant_members_revoke_by_contact_id_and_by_name(db, talk):
    await setup_room(talk)
    # Alice has talked to the bot: the owner may name her as /members shows her.
    await talk.text("帮助", ALICE, "Alice")
    said = await talk.text("/grant alice 1 30d", OWNER)
    async with db.session() as s:
        [(m, alice)] = (
            await s.execute(
                select(Membership, User).join(User, col(User.id) == col(Membership.user_id))
            )
        ).all()
    assert alice.platform_user_id == ALICE
    assert said == t(
        "grant_done", "zh", user="Alice (wxid_alice)", group="Paid room", until=m.expires_at
    )

    # Bob never has: a contact id gives him a user row, and the owner is told what he must do.
    said = await talk.text("/grant wxid_bob 1 lifetime", OWNER)
    assert said.splitlines() == [
        t("grant_done_lifetime", "zh", user="wxid_bob", group="Paid room"),
        t("wechat_grant_new_user", "zh", user="wxid_bob", bot=BOT),
    ]
    members = await talk.text("/members 1", OWNER)
    assert "Alice (wxid_alice)" in members and "wxid_bob" in members

    said = await talk.text("/revoke wxid_alice 1", OWNER)
    assert said == t("revoke_done", "zh", user="Alice (wxid_alice)", group="Paid room")
    again = await talk.text("/revoke wxid_alice 1", OWNER)
    assert again == (
        f"{t('revoke_nothing', 'zh', user='wxid_alice', group='Paid room')}\n"
        f"{t('wechat_usage_revoke', 'zh')}"
    )


@pytest.mark.parametrize(
    "args,key,params",
    [
        ("nobody 1 30d", "wechat_user_unknown", {"ref": "@nobody"}),
        ("wxid_bob 1", "missing_args", {}),
        ("wxid_bob 1 30d extra", "too_many_args", {"extra": "extra"}),
        ("wxid_bob x 30d", "group_ref_invalid", {"ref": "x"}),
        ("wxid_bob 1 3x", "duration_invalid", {"text": "3x"}),
        ("wxid_bob 7 30d", "group_not_found", {"ref": "7"}),
    ],
)
async def test_grant_refusals_change_nothing(db, talk, args, key, params):
    await setup_room(talk)
    users = await count(db, User)
    said = await talk.text(f"/grant {args}", OWNER)
    assert said == f"{t(key, 'zh', **params)}\n{t('wechat_usage_grant', 'zh')}"
    assert await count(db, Membership) == 0 and await count(db, User) == users


async def test_stats_and_refund_in_english(db, talk):
    await talk.text("English", OWNER)
    assert await talk.text("/stats", OWNER) == t("wechat_plans_none", "en")
    await setup_room(talk)
    assert (await talk.text("/stats", OWNER)).splitlines()[1] == t(
        "stats_group", "en", group_id=1, group="Paid room", active=0
    )
    assert await talk.text("/refund GP23456789AB", OWNER) == (
        f"{t('order_refund_unknown', 'en', order_no='GP23456789AB')}\n{t('usage_refund', 'en')}"
    )
    assert await talk.text("/refund no!", OWNER) == (
        f"{t('order_ref_invalid', 'en', ref='no!')}\n{t('usage_refund', 'en')}"
    )


async def test_guard_switches_and_refuses_bad_input(db, talk):
    await setup_room(talk)
    said = await talk.text("/guard 1 remove", OWNER)
    assert said == t("guard_set_remove", "zh", group="Paid room", group_id=1)
    assert [g.guard for g in await groups(db)] == ["remove"]
    said = await talk.text("/guard 1 REPORT", OWNER)
    assert said == t("guard_set_report", "zh", group="Paid room", group_id=1)
    assert [g.guard for g in await groups(db)] == ["report"]
    async with db.session() as s:
        audited = (
            await s.execute(select(func.count()).where(col(AuditLog.action) == "group.guard"))
        ).scalar_one()
    assert audited == 2

    assert await talk.text("/guard 1 kick", OWNER) == t("guard_bad", "zh", guard="kick")
    assert await talk.text("/guard 1", OWNER) == (
        f"{t('missing_args', 'zh')}\n{t('usage_guard', 'zh')}"
    )
    said = await talk.text("/guard 1 remove", BOB, "Bob")
    assert said == f"{t('group_not_yours', 'zh', ref='1')}\n{t('usage_guard', 'zh')}"
    assert [g.guard for g in await groups(db)] == ["report"]


async def test_owner_commands_work_on_a_room_registered_from_the_services(db, now, talk):
    """The same rules as Telegram's: a WeChat owner's room is found by its number."""
    async with db.transaction() as s:
        owner = await get_or_create_user(s, "wechat", OWNER, now)
        await register_group(s, owner, "wechat", ROOM, "Paid room", now, invite_mode="add_member")
    assert (await talk.text("/members 1", OWNER)).startswith(
        t(
            "members_header",
            "zh",
            group="Paid room",
            group_id=1,
            active=0,
            lifetime=0,
            renewing=0,
            ended=0,
        )
    )


@pytest.mark.parametrize(
    "token,ref",
    [
        ("wxid_abc123", UserRef(platform_user_id="wxid_abc123")),
        ("Alice", UserRef(username="Alice")),
        ("@Alice", UserRef(username="Alice")),
        ("小明", UserRef(username="小明")),
        ("2002", UserRef(platform_user_id="2002")),  # a Telegram id: a linked owner's group
    ],
)
def test_a_wechat_user_ref_is_a_contact_id_or_a_name(token, ref):
    assert parse_user_ref(token, "wechat") == ref


@pytest.mark.parametrize("token", ["@", "x" * 65])
def test_bad_wechat_user_refs(token):
    with pytest.raises(ArgError) as err:
        parse_user_ref(token, "wechat")
    assert err.value.key == "user_ref_invalid"


def test_telegram_user_refs_are_unchanged():
    with pytest.raises(ArgError):
        parse_user_ref("Alice")
    with pytest.raises(ArgError):
        parse_user_ref("wxid_abc123")
    assert parse_user_ref("@alice") == UserRef(username="alice")


async def test_revoking_a_renewing_access_without_the_database_handle_warns_the_owner(db, talk):
    """Stopping a renewal at its provider needs sessions of its own (WechatEnv.db): without
    it the access is still revoked, and the owner is told the subscription may charge again."""
    await setup_room(talk)
    await talk.text("/grant wxid_bob 1 30d", OWNER)
    async with db.transaction() as s:
        m = (await s.execute(select(Membership))).scalar_one()
        m.auto_renew, m.provider_subscription_id = True, "sub_123"
    said = await talk.text("/revoke wxid_bob 1", OWNER)
    assert said.splitlines() == [
        t("revoke_done", "zh", user="wxid_bob", group="Paid room"),
        t("revoke_renewal_kept", "zh"),
    ]
    async with db.session() as s:
        assert (await s.execute(select(Membership))).scalar_one().status == "revoked"
