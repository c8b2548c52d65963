"""Groups and plans: what owners register and sell, and what buyers may pick from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from membership.errors import RuleError
from membership.links import linked_user_id
from storage.models import ChatGroup, Plan, PlanGroup, PlanPrice, User, stored_id
from storage.money import Money
from storage.queries import audit

# How invites work per group (DESIGN.md): add_member is WeChat's, set by its front-end.
TELEGRAM_INVITE_MODES = ("join_request", "single_use")
# What a chat_group is: a group (Telegram group/supergroup, WeChat room) or a Telegram channel.
CHAT_TYPES = ("group", "channel")
MAX_ID = 2**31 - 1  # the largest id an integer primary key holds (PostgreSQL's integer)


@dataclass(frozen=True)
class PlanView:
    plan: Plan
    prices: list[Money]
    groups: list[ChatGroup]


async def register_group(
    session: AsyncSession,
    owner: User,
    platform: str,
    chat_id: str,
    title: str,
    now: datetime,
    invite_mode: str | None = None,
    chat_type: str = "group",
) -> tuple[ChatGroup, bool]:
    """Register (or refresh) a group or channel for its owner. Returns (group, created)."""
    if chat_type not in CHAT_TYPES:
        raise ValueError(f"not a chat type: {chat_type}")
    group = (
        await session.execute(
            select(ChatGroup).where(
                col(ChatGroup.platform) == platform, col(ChatGroup.chat_id) == chat_id
            )
        )
    ).scalar_one_or_none()
    if group is not None and group.owner_user_id != owner.id:
        raise RuleError("setup_other_owner")
    created = group is None
    if group is None:
        group = ChatGroup(
            platform=platform,
            chat_id=chat_id,
            title=title[:255],
            owner_user_id=stored_id(owner),
            invite_mode=invite_mode or "join_request",
            chat_type=chat_type,
            created_at=now,
        )
        session.add(group)
    else:
        group.chat_type = chat_type
        group.title = title[:255]
        group.active = True
        group.invite_mode = invite_mode or group.invite_mode
    await session.flush()
    audit(session, f"user:{owner.id}", "group.setup", f"group:{group.id}", now, title)
    return group, created


def can_manage(
    user: User, group: ChatGroup, admin_ids: Sequence[int], linked_id: int | None = None
) -> bool:
    """The group's owner, their linked account on the other platform (`linked_id`, see
    membership/links.py: one person runs both), or a global admin."""
    return (
        group.owner_user_id == user.id
        or (linked_id is not None and group.owner_user_id == linked_id)
        or _is_global_admin(user, admin_ids)
    )


def is_global_admin(user: User, admin_ids: Sequence[int]) -> bool:
    """A configured `telegram.admin_ids` user: manages every group, as its owner would."""
    return _is_global_admin(user, admin_ids)


def _is_global_admin(user: User, admin_ids: Sequence[int]) -> bool:
    return user.platform == "telegram" and user.platform_user_id in {str(i) for i in admin_ids}


async def find_managed_group(
    session: AsyncSession, user: User, ref: str, admin_ids: Sequence[int]
) -> ChatGroup:
    """A group by our id (`3`) or chat id (`-100123`) that this user may manage."""
    ref = ref.strip().lstrip("#")
    if not ref.lstrip("-").isdecimal():  # (isdigit() takes "²", which int() refuses)
        raise RuleError("group_ref_invalid", ref=ref)
    group = None
    if ref.startswith("-"):
        cond = col(ChatGroup.chat_id) == ref
        group = (await session.execute(select(ChatGroup).where(cond))).scalar_one_or_none()
    elif len(ref) <= len(str(MAX_ID)) and int(ref) <= MAX_ID:
        # (a bigger number is no id of ours, and the database refuses it as a parameter)
        cond = col(ChatGroup.id) == int(ref)
        group = (await session.execute(select(ChatGroup).where(cond))).scalar_one_or_none()
    if group is None or not group.active:
        raise RuleError("group_not_found", ref=ref)
    linked = None
    if group.owner_user_id != user.id and user.id is not None:
        linked = await linked_user_id(session, user.id)
    if not can_manage(user, group, admin_ids, linked):
        raise RuleError("group_not_yours", ref=ref)
    return group


async def add_plan(
    session: AsyncSession,
    owner: User,
    groups: Sequence[ChatGroup],
    duration_days: int | None,
    prices: Sequence[Money],
    title: str,
    now: datetime,
    *,
    recurring: bool = False,
) -> Plan:
    if not groups:
        raise RuleError("plan_needs_group")
    # One group named twice (`1,1`, or `1` and its chat id) would break plan_group's key.
    seen: set[int | None] = set()
    for g in groups:
        if g.id in seen:
            raise RuleError("plan_group_twice", ref=g.id)
        seen.add(g.id)
    currencies = [p.currency for p in prices]
    if len(set(currencies)) != len(currencies):
        raise RuleError("plan_duplicate_currency")
    if recurring and duration_days is None:
        raise RuleError("sub_needs_period")
    plan = Plan(
        owner_user_id=stored_id(owner),
        title=title[:128],
        duration_days=duration_days,
        recurring=recurring,
        created_at=now,
    )
    session.add(plan)
    await session.flush()
    for g in groups:
        session.add(PlanGroup(plan_id=stored_id(plan), chat_group_id=stored_id(g)))
    for p in prices:
        session.add(
            PlanPrice(plan_id=stored_id(plan), amount_minor=p.amount_minor, currency=p.currency)
        )
    await session.flush()
    audit(
        session,
        f"user:{owner.id}",
        "plan.add",
        f"plan:{plan.id}",
        now,
        f"{title}; {', '.join(str(p) for p in prices)}; groups {[g.id for g in groups]}",
    )
    return plan


async def _views(session: AsyncSession, plans: Sequence[Plan]) -> list[PlanView]:
    if not plans:
        return []
    ids = [p.id for p in plans]
    prices = (
        (
            await session.execute(
                select(PlanPrice).where(col(PlanPrice.plan_id).in_(ids)).order_by(col(PlanPrice.id))
            )
        )
        .scalars()
        .all()
    )
    links = (
        await session.execute(
            select(col(PlanGroup.plan_id), ChatGroup)
            .join(ChatGroup, col(ChatGroup.id) == col(PlanGroup.chat_group_id))
            .where(col(PlanGroup.plan_id).in_(ids))
            .order_by(col(ChatGroup.id))
        )
    ).all()
    return [
        PlanView(
            plan=p,
            prices=[Money(x.amount_minor, x.currency) for x in prices if x.plan_id == p.id],
            groups=[g for pid, g in links if pid == p.id],
        )
        for p in plans
    ]


async def _owner_ids(session: AsyncSession, owner: User) -> list[int]:
    """The owner's user id and, when linked, their account's on the other platform."""
    assert owner.id is not None
    linked = await linked_user_id(session, owner.id)
    return [owner.id] if linked is None else [owner.id, linked]


async def owner_plans(session: AsyncSession, owner: User) -> list[PlanView]:
    """The plans of the owner's groups, made from either linked account."""
    plans = (
        (
            await session.execute(
                select(Plan)
                .where(col(Plan.owner_user_id).in_(await _owner_ids(session, owner)))
                .where(col(Plan.active))
                .order_by(col(Plan.id))
            )
        )
        .scalars()
        .all()
    )
    return await _views(session, plans)


async def owner_groups(session: AsyncSession, owner: User) -> list[ChatGroup]:
    """The groups of the owner on both platforms, when their accounts are linked."""
    return list(
        (
            await session.execute(
                select(ChatGroup)
                .where(col(ChatGroup.owner_user_id).in_(await _owner_ids(session, owner)))
                .where(col(ChatGroup.active))
                .order_by(col(ChatGroup.id))
            )
        )
        .scalars()
        .all()
    )


async def groups_for_sale(session: AsyncSession, platform: str) -> list[ChatGroup]:
    """Active groups of this platform that have at least one active plan."""
    return list(
        (
            await session.execute(
                select(ChatGroup)
                .where(col(ChatGroup.platform) == platform, col(ChatGroup.active))
                .where(
                    col(ChatGroup.id).in_(
                        select(col(PlanGroup.chat_group_id))
                        .join(Plan, col(Plan.id) == col(PlanGroup.plan_id))
                        .where(col(Plan.active))
                    )
                )
                .order_by(col(ChatGroup.id))
            )
        )
        .scalars()
        .all()
    )


async def get_group(session: AsyncSession, group_id: int) -> ChatGroup | None:
    group = await session.get(ChatGroup, group_id)
    return group if group is not None and group.active else None


async def plans_for_group(session: AsyncSession, group_id: int) -> list[PlanView]:
    plans = (
        (
            await session.execute(
                select(Plan)
                .join(PlanGroup, col(PlanGroup.plan_id) == col(Plan.id))
                .where(col(PlanGroup.chat_group_id) == group_id, col(Plan.active))
                .order_by(col(Plan.id))
            )
        )
        .scalars()
        .all()
    )
    return await _views(session, plans)


async def get_plan(session: AsyncSession, plan_id: int) -> PlanView | None:
    plan = await session.get(Plan, plan_id)
    if plan is None or not plan.active:
        return None
    return (await _views(session, [plan]))[0]
