"""The buyer's /cancel: stop a subscription renewing at the end of the paid period.

The provider is told first, with no transaction open; only when it agreed is auto_renew
switched off here (and audited). The provider's own notice of the change
(customer.subscription.updated) then finds it done and changes nothing. Access is not
touched: it runs to the end of the period already paid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlmodel import col

from billing.errors import PaymentError
from billing.provider import PaymentProvider, SubscriptionCanceller
from membership.errors import RuleError
from membership.removal import ENDED
from storage.db import Database
from storage.models import ChatGroup, Membership, Order, User, table
from storage.queries import audit


@dataclass(frozen=True)
class AutoRenewStopped:
    subscription_id: str
    group: str  # the title of the group asked about
    until: datetime | None  # access runs to this end
    membership_ids: tuple[int, ...]  # every membership the subscription carries (a bundle)


async def _provider_for(
    db: Database, m: Membership, providers: Mapping[str, PaymentProvider]
) -> SubscriptionCanceller | None:
    """The provider of the latest paid order behind the membership; failing that, the only
    configured provider with subscriptions."""
    async with db.session() as s:
        name = (
            await s.execute(
                select(col(Order.provider))
                .where(
                    col(Order.user_id) == m.user_id,
                    col(Order.plan_id) == m.plan_id,
                    col(Order.paid_at).is_not(None),
                )
                .order_by(col(Order.paid_at).desc())
                .limit(1)
            )
        ).scalar_one_or_none()
    if name is not None:
        p = providers.get(name)
        return p if isinstance(p, SubscriptionCanceller) else None
    able = [p for p in providers.values() if isinstance(p, SubscriptionCanceller)]
    return able[0] if len(able) == 1 else None


async def cancel_auto_renew(
    db: Database,
    providers: Mapping[str, PaymentProvider],
    now: datetime,
    *,
    user_id: int,
    membership_id: int | None = None,
    group_id: int | None = None,
    actor: str | None = None,
) -> AutoRenewStopped:
    """Stop the auto-renewal of `user_id`'s access, named by membership id or group id.

    Raises RuleError (nothing changed) with key: `cancel_not_found` (no such access of
    this user), `cancel_nothing` (it does not renew), `cancel_unsupported` (its provider
    cannot), `cancel_failed` (the provider did not answer; try again).
    """
    if (membership_id is None) == (group_id is None):
        raise ValueError("name the access by membership_id or by group_id")
    async with db.session() as s:
        q = (
            select(Membership, ChatGroup, col(User.platform_user_id))
            .join(ChatGroup, col(ChatGroup.id) == col(Membership.chat_group_id))
            .join(User, col(User.id) == col(Membership.user_id))
        )
        q = q.where(col(Membership.user_id) == user_id)
        q = q.where(
            col(Membership.id) == membership_id
            if membership_id is not None
            else col(Membership.chat_group_id) == group_id
        )
        row = (await s.execute(q)).first()
    if row is None:
        raise RuleError("cancel_not_found")
    m, group, buyer_ref = row
    sub = m.provider_subscription_id
    if sub is None or not m.auto_renew or m.status in ENDED:
        raise RuleError("cancel_nothing", group=group.title)
    provider = await _provider_for(db, m, providers)
    if provider is None:
        raise RuleError("cancel_unsupported", group=group.title)
    try:
        await provider.cancel_subscription_at_period_end(sub, buyer_ref=buyer_ref)
    except PaymentError as e:
        raise RuleError("cancel_failed", group=group.title) from e
    who = actor or f"user:{user_id}"
    async with db.transaction() as s:
        ids = list(
            (
                await s.execute(
                    update(Membership)
                    .where(
                        col(Membership.provider_subscription_id) == sub,
                        col(Membership.auto_renew).is_(True),
                    )
                    .values(auto_renew=False, updated_at=now)
                    .returning(col(Membership.id))
                )
            )
            .scalars()
            .all()
        )
        for mid in ids:
            audit(
                s,
                who,
                "membership.auto_renew_off",
                f"membership:{mid}",
                now,
                f"cancelled at period end; subscription {sub}",
            )
        carried = tuple(
            (
                await s.execute(
                    # The Core column: its values are ints (col(Membership.id) says int | None).
                    select(table(Membership).c.id)
                    .where(col(Membership.provider_subscription_id) == sub)
                    .order_by(col(Membership.id))
                )
            )
            .scalars()
            .all()
        )
    return AutoRenewStopped(
        subscription_id=sub, group=group.title, until=m.expires_at, membership_ids=carried
    )
