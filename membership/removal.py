"""Ending access: lapse, refund, dispute, owner's /revoke. One path for all of them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.models import ChatGroup, Invite, Membership, User
from storage.queries import audit, enqueue

ENDED = ("expired", "revoked")


async def end_access(
    session: AsyncSession,
    m: Membership,
    now: datetime,
    *,
    status: str,
    actor: str,
    reason: str,
    notice_key: str | None,
    notice_params: dict[str, object] | None = None,
) -> bool:
    """Mark the membership ended (compare-and-set on its status), and queue the removal from
    the chat, the revocation of its unused invite links and the notice to the user.

    Returns False, doing nothing, when another transaction already ended it: several
    replicas may race for the same row and only one may remove and notify.
    """
    assert status in ENDED
    moved = await session.execute(
        update(Membership)
        .where(
            col(Membership.id) == m.id,
            col(Membership.status) == m.status,
            col(Membership.status).not_in(ENDED),
        )
        .values(status=status, updated_at=now, auto_renew=False)
        # No need to walk the session's identity map: the caller's row is refreshed below.
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        # Not ours to end; the row is left as the other transaction made it (setting the
        # attributes here would write our status over theirs at the next flush).
        return False
    m.status, m.updated_at, m.auto_renew = status, now, False
    group = await session.get(ChatGroup, m.chat_group_id)
    user = await session.get(User, m.user_id)
    assert group is not None and user is not None
    if user.platform != group.platform:
        # Parked access (a bundle's group on the platform the buyer has not linked yet): it
        # never reached the chat, so there is nothing to remove there nor links to revoke.
        links: Sequence[Invite] = ()
    else:
        enqueue(
            session,
            "remove_member",
            group.platform,
            {"chat_id": group.chat_id, "user_id": user.platform_user_id},
            now,
        )
        links = await _unused_links(session, m)
    for inv in links:
        inv.revoked = True
        enqueue(
            session,
            "revoke_invite",
            group.platform,
            {"chat_id": group.chat_id, "link": inv.link},
            now,
        )
    if notice_key:
        enqueue(
            session,
            "notify",
            user.platform,
            {
                "user_id": user.platform_user_id,
                "key": notice_key,
                "params": {"group": group.title, "group_id": group.id, **(notice_params or {})},
                "language": user.language,
            },
            now,
        )
    audit(
        session,
        actor,
        f"membership.{status}",
        f"membership:{m.id}",
        now,
        f"{reason}; user {user.id} group {group.id}",
    )
    return True


async def _unused_links(session: AsyncSession, m: Membership) -> Sequence[Invite]:
    return (
        (
            await session.execute(
                select(Invite).where(
                    col(Invite.membership_id) == m.id,
                    col(Invite.revoked).is_(False),
                    col(Invite.used_by).is_(None),
                )
            )
        )
        .scalars()
        .all()
    )
