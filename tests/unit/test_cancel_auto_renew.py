"""/cancel: stop auto-renew at the period's end through Stripe (the local host over HTTP),
then Stripe's own notices of it change nothing more; access runs to its paid end."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from billing.ingest import ingest_webhook
from billing.providers.sandbox_provider import SandboxProvider
from billing.subscriptions import cancel_auto_renew
from membership.errors import RuleError
from storage.models import AuditLog, Membership
from tests.factories import (
    SANDBOX_SECRET,
    deliver_stripe_event,
    make_order,
    make_shop,
    paid_subscription,
    sandbox_event,
    stripe_events,
)

# `fake` (the local Stripe host, no webhook_url) and `stripe`: tests/unit/conftest.py


async def subscribed(db, fake, stripe, now, groups: int = 1):
    shop, _order, sub_id = await paid_subscription(db, fake, stripe, now, groups=groups)
    return shop, sub_id


async def memberships(db) -> list[Membership]:
    async with db.session() as s:
        return list((await s.execute(select(Membership).order_by(col(Membership.id)))).scalars())


async def test_cancel_stops_renewal_at_stripe_and_here(db, fake, stripe, now):
    shop, sub_id = await subscribed(db, fake, stripe, now, groups=2)
    before = await memberships(db)
    assert all(m.auto_renew and m.provider_subscription_id == sub_id for m in before)
    done = await cancel_auto_renew(
        db, {"stripe": stripe}, now, user_id=shop.buyer.id, group_id=shop.group.id
    )
    assert done.subscription_id == sub_id and done.group == shop.group.title
    assert done.until == before[0].expires_at
    assert done.membership_ids == tuple(m.id for m in before)
    assert fake.subscriptions[sub_id]["cancel_at_period_end"] is True
    after = await memberships(db)
    assert [m.auto_renew for m in after] == [False, False]
    assert [(m.status, m.expires_at) for m in after] == [(m.status, m.expires_at) for m in before]
    async with db.session() as s:
        audit = [(a.actor, a.action) for a in (await s.execute(select(AuditLog))).scalars()]
    assert audit.count((f"user:{shop.buyer.id}", "membership.auto_renew_off")) == 2
    # Stripe tells us about it afterwards: already so.
    await fake.settle()
    (updated,) = stripe_events(fake, "customer.subscription.updated")
    assert await deliver_stripe_event(db, stripe, updated, now) == "updated"
    async with db.session() as s:
        offs = (
            (
                await s.execute(
                    select(AuditLog).where(col(AuditLog.action) == "membership.auto_renew_off")
                )
            )
            .scalars()
            .all()
        )
    assert len(offs) == 2
    # At the period's end Stripe ends the subscription; access still runs to its end.
    assert await fake.advance_period(sub_id) is None
    (deleted,) = stripe_events(fake, "customer.subscription.deleted")
    assert await deliver_stripe_event(db, stripe, deleted, now + timedelta(days=30)) == "updated"
    assert [(m.status, m.expires_at) for m in await memberships(db)] == [
        (m.status, m.expires_at) for m in before
    ]


async def test_cancel_by_membership_id(db, fake, stripe, now):
    shop, _ = await subscribed(db, fake, stripe, now)
    (m,) = await memberships(db)
    await cancel_auto_renew(db, {"stripe": stripe}, now, user_id=shop.buyer.id, membership_id=m.id)
    assert (await memberships(db))[0].auto_renew is False


async def test_nothing_to_cancel_twice(db, fake, stripe, now):
    shop, _ = await subscribed(db, fake, stripe, now)
    await cancel_auto_renew(
        db, {"stripe": stripe}, now, user_id=shop.buyer.id, group_id=shop.group.id
    )
    calls = len(fake.requests)
    with pytest.raises(RuleError) as err:
        await cancel_auto_renew(
            db, {"stripe": stripe}, now, user_id=shop.buyer.id, group_id=shop.group.id
        )
    assert err.value.key == "cancel_nothing"
    assert len(fake.requests) == calls


async def test_one_time_access_has_nothing_to_cancel(db, now):
    sandbox = SandboxProvider(SANDBOX_SECRET, "http://127.0.0.1:1")
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    await ingest_webhook(db, sandbox, *sandbox_event(order), now)
    with pytest.raises(RuleError) as err:
        await cancel_auto_renew(
            db, {"sandbox": sandbox}, now, user_id=shop.buyer.id, group_id=shop.group.id
        )
    assert err.value.key == "cancel_nothing"


async def test_someone_elses_access_is_not_found(db, fake, stripe, now):
    shop, _ = await subscribed(db, fake, stripe, now)
    with pytest.raises(RuleError) as err:
        await cancel_auto_renew(
            db, {"stripe": stripe}, now, user_id=shop.owner.id, group_id=shop.group.id
        )
    assert err.value.key == "cancel_not_found"


async def test_provider_failure_changes_nothing(db, fake, stripe, now):
    shop, sub_id = await subscribed(db, fake, stripe, now)
    del fake.subscriptions[sub_id]  # Stripe answers 404
    with pytest.raises(RuleError) as err:
        await cancel_auto_renew(
            db, {"stripe": stripe}, now, user_id=shop.buyer.id, group_id=shop.group.id
        )
    assert err.value.key == "cancel_failed"
    assert (await memberships(db))[0].auto_renew is True


async def test_provider_no_longer_configured(db, fake, stripe, now):
    shop, _ = await subscribed(db, fake, stripe, now)
    with pytest.raises(RuleError) as err:
        await cancel_auto_renew(db, {}, now, user_id=shop.buyer.id, group_id=shop.group.id)
    assert err.value.key == "cancel_unsupported"
