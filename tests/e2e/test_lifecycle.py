"""Issue 3, end to end with the clock moved: reminders, grace, removal, coming back,
renewals, refunds, disputes, reconciliation of a missed webhook, and timeout close."""

from __future__ import annotations

from datetime import timedelta

from storage.models import Invite, Membership, Order
from tests.e2e.world import BUYER, GROUP, OWNER, World


def session_id(checkout_url: str) -> str:
    return checkout_url.rstrip("/").rsplit("/", 1)[1]


async def sweep(world: World, **delta: float) -> None:
    world.clock.advance(timedelta(**delta))
    await world.service.sweeps.run_sweeps_once(world.clock.now())


async def buy_and_join(
    world: World, plan: str = "30d 4.99USD Monthly access", sub: bool = False
) -> str:
    if sub:
        reply = await world.ask(
            OWNER, "/setup", chat=GROUP, match=lambda m: "group #" in (m.text or "")
        )
        assert reply
        await world.ask(OWNER, f"/addsub 1 {plan}", match=lambda m: "Plan #" in (m.text or ""))
    else:
        await world.set_up_shop(plan)
    sid = session_id(await world.checkout())
    assert await world.stripe.pay(sid) == 200
    link = await world.invite_for(BUYER)
    assert await world.tg.join_by_link(BUYER, link) == "requested"
    await world.wait_status(GROUP, BUYER, "member")
    return sid


async def test_remind_then_grace_then_removal_then_come_back(world: World):
    await buy_and_join(world)
    before = await world.last_id(BUYER)
    await sweep(world, days=27, hours=1)  # 3 days before the end: remind
    reminder = await world.wait_text(BUYER, "Renew now", since=before)
    assert reminder.button_urls and "start=g_1" in reminder.button_urls[0]
    await sweep(world, hours=1)  # once per period
    await sweep(world, days=3)  # ended, but inside the grace period
    assert (
        len(
            [
                m
                for m in await world.tg.sent_messages(BUYER, since=before)
                if "Renew now" in (m.text or "")
            ]
        )
        == 1
    )
    assert await world.tg.member_status(GROUP, BUYER) == "member"
    await sweep(world, hours=25)  # past grace: removed and told
    await world.wait_status(GROUP, BUYER, "left")
    await world.wait_text(BUYER, "has ended")
    (m,) = await world.rows(Membership)
    assert m.status == "expired"
    assert len(await world.tg.calls("banChatMember")) == 1
    assert (await world.tg.calls("unbanChatMember"))[0]["params"]["only_if_banned"]
    # Buying again after removal works: a fresh invite, approved.
    since = await world.last_id(BUYER)
    assert await world.stripe.pay(session_id(await world.checkout())) == 200
    msg = await world.tg.wait_for_message(
        BUYER, lambda x: any("t.me/+" in u for u in x.button_urls), since=since
    )
    assert await world.tg.join_by_link(BUYER, msg.button_urls[0]) == "requested"
    await world.wait_status(GROUP, BUYER, "member")
    (m,) = await world.rows(Membership)
    assert m.status == "active"


async def test_lifetime_access_never_lapses(world: World):
    await buy_and_join(world, "lifetime 99USD Forever")
    await sweep(world, days=3000)
    assert await world.tg.member_status(GROUP, BUYER) == "member"


async def test_subscription_renewal_extends_to_the_paid_period_end(world: World):
    sid = await buy_and_join(world, "1m 4.99USD Monthly", sub=True)
    (m,) = await world.rows(Membership)
    assert m.auto_renew and m.provider_subscription_id
    first_end = m.expires_at
    sub = world.stripe.subscriptions[m.provider_subscription_id]
    world.clock.advance(timedelta(days=29))
    assert await world.stripe.advance_period(sub["id"]) == 200
    period_end = sub["items"]["data"][0]["current_period_end"]
    (m,) = await world.rows(Membership)
    assert int(m.expires_at.timestamp()) == period_end and m.expires_at > first_end
    await world.wait_text(BUYER, "runs until")
    await sweep(world, days=5)  # the old end has passed: the renewed member stays
    assert await world.tg.member_status(GROUP, BUYER) == "member"
    assert sid


async def test_refund_revokes_at_once_and_tells_the_owner(world: World):
    sid = await buy_and_join(world)
    assert await world.stripe.refund(sid) == 200
    await world.wait_status(GROUP, BUYER, "left")
    (m,) = await world.rows(Membership)
    (o,) = await world.rows(Order)
    assert (m.status, o.status) == ("revoked", "refunded")
    await world.wait_text(OWNER, o.order_no)


async def test_refunded_subscription_is_revoked_and_stopped_at_stripe(world: World):
    sid = await buy_and_join(world, "1m 9.99USD Monthly", sub=True)
    sub_id = world.stripe.sessions[sid]["subscription"]
    assert await world.stripe.refund(sid) == 200  # the charge names no order or invoice
    await world.wait_status(GROUP, BUYER, "left")
    (m,) = await world.rows(Membership)
    assert (m.status, m.auto_renew) == ("revoked", False)

    async def stopped() -> bool:
        return world.stripe.subscriptions[sub_id]["cancel_at_period_end"] is True

    await world.eventually(stopped)  # no more charges for revoked access
    (o,) = await world.rows(Order)
    await world.wait_text(OWNER, o.order_no)


async def test_dispute_revokes_at_once(world: World):
    sid = await buy_and_join(world)
    assert await world.stripe.dispute(sid) == 200
    await world.wait_status(GROUP, BUYER, "left")
    (m,) = await world.rows(Membership)
    assert m.status == "revoked"


async def test_reconciliation_grants_a_missed_webhook_once(world: World):
    await world.set_up_shop()
    sid = session_id(await world.checkout())
    hook, world.stripe.webhook_url = world.stripe.webhook_url, None
    await world.stripe.pay(sid)  # paid, but the webhook never arrives
    assert await world.count(Membership) == 0
    await sweep(world, minutes=6)
    link = await world.invite_for(BUYER)
    assert link
    (o,) = await world.rows(Order)
    assert o.status == "paid"
    world.stripe.webhook_url = hook  # the late webhook changes nothing
    completed = next(e for e in world.stripe.events if e["type"] == "checkout.session.completed")
    assert await world.stripe.redeliver(completed["id"]) == 200
    assert await world.count(Membership) == 1
    assert await world.count(Invite) == 1


async def test_unpaid_order_is_closed_at_the_provider_after_the_timeout(world: World):
    await world.set_up_shop()
    sid = session_id(await world.checkout())
    await sweep(world, minutes=61)
    (o,) = await world.rows(Order)
    assert o.status == "expired"
    assert world.stripe.sessions[sid]["status"] == "expired"


async def test_owner_policy_keep_lets_refunded_access_run_to_its_end(world: World):
    reply = await world.ask(
        OWNER, "/refundpolicy sometimes", match=lambda m: "Usage" in (m.text or "")
    )
    assert "not a refund policy" in reply.text
    reply = await world.ask(
        OWNER, "/refundpolicy keep", match=lambda m: "policy: keep" in (m.text or "")
    )
    assert reply
    sid = await buy_and_join(world)
    assert await world.stripe.refund(sid) == 200
    (o,) = await world.rows(Order)
    await world.wait_text(OWNER, o.order_no)
    (m,) = await world.rows(Membership)
    assert m.status == "active" and not m.auto_renew
    assert await world.tg.member_status(GROUP, BUYER) == "member"
    await sweep(world, days=32)  # ...until its end date and grace
    await world.wait_status(GROUP, BUYER, "left")
