"""The owner's /grant and /revoke, and the buyer's "send my invite again"."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from membership.admin import UserRef, grant_access, resend_invite, revoke_access
from membership.errors import RuleError
from storage.db import Database
from storage.models import AuditLog, ChatGroup, Invite, Membership, Outbox, User
from tests.factories import Shop, make_shop

DAY = timedelta(days=1)
BOB = UserRef(username="BUYER")  # usernames match whatever their case


async def _grant(db: Database, shop: Shop, ref: UserRef, days: int | None, now: datetime):
    async with db.transaction() as s:
        owner = await s.get(User, shop.owner.id)
        group = await s.get(ChatGroup, shop.group.id)
        return await grant_access(s, owner, group, ref, days, now)


async def _revoke(db: Database, shop: Shop, ref: UserRef, now: datetime):
    async with db.transaction() as s:
        owner = await s.get(User, shop.owner.id)
        group = await s.get(ChatGroup, shop.group.id)
        return await revoke_access(s, owner, group, ref, now)


async def _all(db: Database, model):
    async with db.session() as s:
        return list((await s.execute(select(model).order_by(model.id))).scalars().all())


def _notices(rows: list[Outbox]) -> list[tuple[str, str | None]]:
    return [(r.kind, r.payload.get("key")) for r in rows]


async def test_grant_to_a_known_username_queues_invite_and_notice(db, now):
    shop = await make_shop(db, now)
    done = await _grant(db, shop, BOB, 30, now)
    assert done.user.id == shop.buyer.id and not done.new_user
    (m,) = await _all(db, Membership)
    assert (m.status, m.expires_at) == ("active", now + 30 * DAY)
    assert _notices(await _all(db, Outbox)) == [
        ("deliver_invite", None),
        ("notify", "granted_by_owner"),
    ]
    (audit,) = [a for a in await _all(db, AuditLog) if a.action == "membership.grant"]
    assert audit.actor == f"user:{shop.owner.id}" and "granted by the owner (1m)" in audit.detail


async def test_grant_extends_running_access_and_lifetime_stays(db, now):
    shop = await make_shop(db, now)
    await _grant(db, shop, BOB, 30, now)
    await _grant(db, shop, BOB, 10, now + DAY)
    (m,) = await _all(db, Membership)
    assert m.expires_at == now + 40 * DAY
    assert _notices(await _all(db, Outbox))[-2:] == [
        ("notify", "access_extended"),
        ("notify", "granted_by_owner"),
    ]
    await _grant(db, shop, BOB, None, now + DAY)
    await _grant(db, shop, BOB, 30, now + DAY)
    (m,) = await _all(db, Membership)
    assert m.expires_at is None


async def test_grant_to_an_unseen_numeric_id_creates_the_user(db, now):
    shop = await make_shop(db, now)
    done = await _grant(db, shop, UserRef(platform_user_id="777"), None, now)
    assert done.new_user and done.user.platform_user_id == "777"
    assert done.membership.expires_at is None
    assert _notices(await _all(db, Outbox))[-1] == ("notify", "granted_by_owner_lifetime")
    # ...and a second grant finds them.
    assert not (await _grant(db, shop, UserRef(platform_user_id="777"), 30, now)).new_user


async def test_grant_to_an_unknown_username_changes_nothing(db, now):
    shop = await make_shop(db, now)
    with pytest.raises(RuleError) as err:
        await _grant(db, shop, UserRef(username="nobody"), 30, now)
    assert (err.value.key, err.value.params) == ("user_unknown", {"ref": "@nobody"})
    assert await _all(db, Membership) == [] and await _all(db, Outbox) == []


async def test_revoke_removes_tells_and_audits(db, now):
    shop = await make_shop(db, now)
    await _grant(db, shop, BOB, 30, now)
    user, m = await _revoke(db, shop, UserRef(platform_user_id="2000"), now + DAY)
    assert user.id == shop.buyer.id
    (m,) = await _all(db, Membership)
    assert (m.status, m.auto_renew) == ("revoked", False)
    rows = await _all(db, Outbox)
    assert _notices(rows)[-2:] == [("remove_member", None), ("notify", "access_revoked_owner")]
    assert rows[-2].payload == {"chat_id": shop.group.chat_id, "user_id": "2000"}
    assert rows[-1].payload["params"]["group_id"] == shop.group.id
    (audit,) = [a for a in await _all(db, AuditLog) if a.action == "membership.revoked"]
    assert audit.actor == f"user:{shop.owner.id}" and "revoked by the owner" in audit.detail
    # Twice: nothing left to revoke, nothing more queued.
    with pytest.raises(RuleError) as err:
        await _revoke(db, shop, BOB, now + DAY)
    assert err.value.key == "revoke_nothing"
    assert len(await _all(db, Outbox)) == len(rows)


async def test_revoke_refusals(db, now):
    shop = await make_shop(db, now)
    for ref, key in [
        (UserRef(username="nobody"), "revoke_nothing"),
        (UserRef(platform_user_id="2000"), "revoke_nothing"),
        (UserRef(username="owner"), "revoke_owner"),
    ]:
        with pytest.raises(RuleError) as err:
            await _revoke(db, shop, ref, now)
        assert err.value.key == key
    assert await _all(db, Outbox) == []


async def test_resend_invite(db, now):
    shop = await make_shop(db, now)
    done = await _grant(db, shop, BOB, 30, now)
    mid = done.membership.id
    async with db.transaction() as s:
        buyer = await s.get(User, shop.buyer.id)
        await resend_invite(s, buyer, mid, now)  # no link yet: make one
        s.add(
            Invite(
                membership_id=mid, link="https://t.me/+abc", expires_at=now + DAY, created_at=now
            )
        )
    async with db.transaction() as s:
        buyer = await s.get(User, shop.buyer.id)
        group = await resend_invite(s, buyer, mid, now)  # an unused link: send it again
    assert group.id == shop.group.id
    rows = await _all(db, Outbox)
    assert _notices(rows)[-2:] == [("deliver_invite", None), ("notify", "invite_again")]
    assert rows[-1].payload["buttons"][0]["url"] == "https://t.me/+abc"
    async with db.transaction() as s:
        owner = await s.get(User, shop.owner.id)
        with pytest.raises(RuleError) as err:
            await resend_invite(s, owner, mid, now)
        assert err.value.key == "cancel_not_found"
    await _revoke(db, shop, BOB, now)
    async with db.transaction() as s:
        buyer = await s.get(User, shop.buyer.id)
        with pytest.raises(RuleError) as err:
            await resend_invite(s, buyer, mid, now)
        assert err.value.key == "my_not_active"
