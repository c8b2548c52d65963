"""An owner's standing choices about their business."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from membership.errors import RuleError
from storage.models import ChatGroup, User, Whitelist
from storage.queries import audit, insert_ignore

# What a refund or dispute does to the access it paid for (billing/payments.apply_reversal):
# "revoke" ends it at once; "keep" lets it run to its end date without renewing.
REFUND_POLICIES = ("revoke", "keep")


async def set_refund_policy(session: AsyncSession, owner: User, policy: str, now: datetime) -> None:
    policy = policy.strip().lower()
    if policy not in REFUND_POLICIES:
        raise RuleError("refund_policy_bad", policy=policy)
    if owner.refund_policy != policy:
        audit(
            session,
            f"user:{owner.id}",
            "owner.refund_policy",
            f"user:{owner.id}",
            now,
            f"{owner.refund_policy} -> {policy}",
        )
        owner.refund_policy = policy


async def whitelist(
    session: AsyncSession,
    owner: User,
    group: ChatGroup,
    platform_user_id: str,
    now: datetime,
    *,
    add: bool,
) -> bool:
    """Let someone stay in the group without a paid membership (staff, friends), or stop
    letting them. Returns False when there was nothing to change."""
    if add:
        changed = (
            await insert_ignore(
                session,
                Whitelist,
                {
                    "chat_group_id": group.id,
                    "platform_user_id": platform_user_id,
                    "created_at": now,
                },
                conflict=["chat_group_id", "platform_user_id"],
            )
            is not None
        )
    else:
        changed = (
            await session.execute(
                delete(Whitelist).where(
                    col(Whitelist.chat_group_id) == group.id,
                    col(Whitelist.platform_user_id) == platform_user_id,
                )
            )
        ).rowcount > 0  # type: ignore[attr-defined]
    if changed:
        audit(
            session,
            f"user:{owner.id}",
            "whitelist.add" if add else "whitelist.remove",
            f"group:{group.id}",
            now,
            f"user {platform_user_id}",
        )
    return changed


# What the join guard does with a member who appears without access (membership/joins.py).
GUARDS = ("report", "remove")


async def set_guard(
    session: AsyncSession, owner: User, group: ChatGroup, guard: str, now: datetime
) -> bool:
    """Set the group's guard ("report" the intruder to the owner, or "remove" them). The
    caller has checked that `owner` manages the group (catalog.find_managed_group). Returns
    False when it was set so already."""
    guard = guard.strip().lower()
    if guard not in GUARDS:
        raise RuleError("guard_bad", guard=guard)
    if group.guard == guard:
        return False
    audit(
        session,
        f"user:{owner.id}",
        "group.guard",
        f"group:{group.id}",
        now,
        f"{group.guard} -> {guard}",
    )
    group.guard = guard
    return True
