"""Issue 2, end to end: the real service, driven as Telegram users, Stripe and an owner would."""

from __future__ import annotations

import asyncio
import time

from sqlmodel import col

from storage.models import Invite, Membership, Order, Outbox, Payment, WebhookEvent
from tests.e2e.world import BOT_ID, BUYER, GROUP, OWNER, STRANGER, STRIPE_WHSEC, World
from tests.stripe_fixtures import build_event, completed_session, event_body, sign_payload


def session_id(checkout_url: str) -> str:
    return checkout_url.rstrip("/").rsplit("/", 1)[1]


async def test_owner_setup_names_the_missing_right(world: World):
    await world.tg.promote(
        GROUP, BOT_ID, {"can_invite_users": True, "can_restrict_members": False}, by=OWNER
    )
    reply = await world.ask(
        OWNER, "/setup", chat=GROUP, match=lambda m: "Missing" in (m.text or "")
    )
    assert "ban users" in reply.text and "invite" not in reply.text.split("Missing:")[1]
    assert await world.count(Outbox, col(Outbox.kind) != "reply") == 0  # (the refusal is a reply)


async def test_only_the_groups_admins_may_set_it_up(world: World):
    await world.tg.add_member(GROUP, STRANGER, by=OWNER)
    reply = await world.ask(
        STRANGER,
        "/setup",
        chat=GROUP,
        match=lambda m: "creator or an administrator" in (m.text or ""),
    )
    assert reply.text


async def test_bad_addplan_gets_one_line_and_usage_and_changes_nothing(world: World):
    group_no = await world.set_up_shop()
    for args, reason in [
        ("", "missing"),
        (f"{group_no} 3x 4.99USD", "not a duration"),
        (f"{group_no} 30d 4.999USD", "decimal places"),
        ("999 30d 4.99USD", "no group 999"),
        (f"{group_no} 30d 4.99USD 5.99USD", "one price"),
    ]:
        reply = await world.ask(
            OWNER, f"/addplan {args}".strip(), match=lambda m: "Usage:" in (m.text or "")
        )
        assert reason in reply.text, (args, reply.text)
    plans = await world.ask(OWNER, "/plans", match=lambda m: "plan #" in (m.text or ""))
    assert plans.text.count("plan #") == 1


async def test_someone_elses_group_cannot_be_managed(world: World):
    group_no = await world.set_up_shop()
    reply = await world.ask(
        BUYER, f"/addplan {group_no} 30d 1USD", match=lambda m: "Usage:" in (m.text or "")
    )
    assert "not yours" in reply.text


async def test_purchase_invite_approval_and_stranger_declined(world: World):
    await world.set_up_shop()
    url = await world.checkout()
    sid = session_id(url)
    session = world.stripe.sessions[sid]
    (order,) = await world.rows(Order)
    assert session["client_reference_id"] == order.order_no
    assert session["metadata"]["order_no"] == order.order_no
    assert (session["mode"], session["amount_total"], session["currency"]) == (
        "payment",
        499,
        "usd",
    )

    assert await world.stripe.pay(sid) == 200
    link = await world.invite_for(BUYER)
    (created,) = await world.tg.invite_links(GROUP)
    assert created["creates_join_request"] is True and "member_limit" not in created
    assert await world.tg.join_by_link(BUYER, link) == "requested"
    await world.wait_status(GROUP, BUYER, "member")
    (order,) = await world.rows(Order)
    assert order.status == "paid"

    # The buyer forwards the link; the stranger's request is declined and they are told why.
    await world.tg.create_user(4004, "Eve", language_code="zh-hans")
    assert await world.tg.join_by_link(STRANGER, link) == "requested"
    declined = await world.wait_text(STRANGER, "declined")
    assert "t.me/gatepass_bot?start=g_" in declined.text

    async def no_requests() -> bool:
        return await world.tg.join_requests(GROUP) == []

    await world.eventually(no_requests)
    assert await world.tg.member_status(GROUP, STRANGER) == "left"
    assert await world.tg.join_by_link(4004, link) == "requested"
    zh = await world.wait_text(4004, "被拒绝")  # the Chinese catalog for a zh Telegram client
    assert zh.text


async def test_duplicate_delivery_gives_one_grant_and_one_invite(world: World):
    await world.set_up_shop()
    sid = session_id(await world.checkout())
    await world.stripe.pay(sid)
    await world.invite_for(BUYER)
    completed = next(e for e in world.stripe.events if e["type"] == "checkout.session.completed")
    for _ in range(3):
        assert await world.stripe.redeliver(completed["id"]) == 200
    await asyncio.sleep(0.5)  # give a wrong second invite time to appear
    assert await world.count(Membership) == 1
    assert await world.count(Invite) == 1
    assert len(await world.tg.calls("createChatInviteLink")) == 1
    assert await world.count(WebhookEvent) == 1
    assert await world.count(Payment) == 1


async def _signed_completion(
    world: World,
    order: Order,
    secret: str = STRIPE_WHSEC,
    timestamp: int | None = None,
    amount: int | None = None,
) -> tuple[int, str]:
    obj = completed_session(
        order.order_no,
        amount=order.amount_minor if amount is None else amount,
        currency=order.currency.lower(),
        id=order.provider_ref,
    )
    body = event_body(build_event("checkout.session.completed", obj))
    return await world.post(
        "/webhooks/stripe",
        body,
        {
            "Stripe-Signature": sign_payload(body, secret, timestamp),
            "Content-Type": "application/json",
        },
    )


async def test_tampered_or_stale_signature_is_400_and_changes_nothing(world: World):
    await world.set_up_shop()
    await world.checkout()
    (order,) = await world.rows(Order)
    status, _ = await _signed_completion(world, order, secret="whsec_wrong")
    assert status == 400
    status, _ = await _signed_completion(world, order, timestamp=int(time.time()) - 600)
    assert status == 400
    obj = completed_session(order.order_no, amount=order.amount_minor, id=order.provider_ref)
    body = event_body(build_event("checkout.session.completed", obj))
    header = sign_payload(body, STRIPE_WHSEC)
    status, _ = await world.post(
        "/webhooks/stripe", body.replace(b'"paid"', b'"paid" '), {"Stripe-Signature": header}
    )
    assert status == 400
    assert await world.count(WebhookEvent) == 0
    assert await world.count(Membership) == 0
    assert (await world.rows(Order))[0].status == "pending"
    # ...while the same event, signed properly, is accepted.
    status, _ = await _signed_completion(world, order)
    assert status == 200
    await world.invite_for(BUYER)


async def test_amount_mismatch_gives_no_access_and_tells_the_owner(world: World):
    await world.set_up_shop()
    sid = session_id(await world.checkout())
    assert await world.stripe.pay(sid, amount_total=1) == 200
    note = await world.wait_text(OWNER, "No access was granted")
    assert "0.01 USD" in note.text and "4.99 USD" in note.text
    await world.wait_text(BUYER, "does not match")
    assert await world.count(Membership) == 0
    assert (await world.rows(Order))[0].status == "failed"
    assert await world.tg.invite_links(GROUP) == []


async def test_unknown_event_type_is_200_and_ignored(world: World):
    body = event_body(build_event("customer.created", {"id": "cus_1", "object": "customer"}))
    status, _ = await world.post(
        "/webhooks/stripe", body, {"Stripe-Signature": sign_payload(body, STRIPE_WHSEC)}
    )
    assert status == 200
    assert await world.count(Membership) == 0


async def test_single_use_invite_lets_one_person_in(world: World):
    await world.set_up_shop(mode="single_use")
    await world.stripe.pay(session_id(await world.checkout()))
    link = await world.invite_for(BUYER)
    (created,) = await world.tg.invite_links(GROUP)
    assert created["member_limit"] == 1 and created.get("expire_date")
    assert await world.tg.join_by_link(BUYER, link) == "joined"
    assert await world.tg.join_by_link(STRANGER, link) == "limit_reached"

    async def used_by_the_buyer() -> bool:
        # The join's chat_member update records who used the link: asynchronous.
        (inv,) = await world.rows(Invite)
        return inv.used_by == str(BUYER)

    await world.eventually(used_by_the_buyer)
    assert await world.tg.member_status(GROUP, BUYER) == "member"


async def test_member_without_access_is_removed_but_may_come_back(world: World):
    await world.set_up_shop()
    await world.tg.add_member(GROUP, STRANGER, by=OWNER)  # added by hand, never paid
    await world.wait_status(GROUP, STRANGER, "left")
    bans = await world.tg.calls("banChatMember")
    unbans = await world.tg.calls("unbanChatMember")
    assert len(bans) == 1 and len(unbans) == 1 and unbans[0]["params"]["only_if_banned"]
    # not banned for good: they can buy and come back
    await world.tg.send_text(STRANGER, "/help")
    await world.stripe.pay(session_id(await world.checkout(STRANGER)))
    link = await world.invite_for(STRANGER)
    assert await world.tg.join_by_link(STRANGER, link) == "requested"
    await world.wait_status(GROUP, STRANGER, "member")


async def test_telegram_429_is_obeyed_and_nothing_is_lost(world: World):
    await world.set_up_shop()
    await world.tg.inject_fault("createChatInviteLink", error_code=429, retry_after=1, count=2)
    started = time.monotonic()
    await world.stripe.pay(session_id(await world.checkout()))
    await world.invite_for(BUYER, timeout=10)
    assert time.monotonic() - started >= 1.0
    rows = await world.rows(Outbox, col(Outbox.kind) == "deliver_invite")
    assert [r.status for r in rows] == ["done"]
    assert len(await world.tg.calls("createChatInviteLink")) == 3  # two refused, then one


async def test_sandbox_checkout_page_pays_through_the_webhook_path(world: World):
    await world.set_up_shop()
    url = await world.checkout(provider="sandbox")
    assert url.startswith(f"{world.public_url}/sandbox/pay/")
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            assert r.status == 200 and "Pay 4.99 USD" in await r.text()
        async with http.post(url) as r:
            assert r.status == 200 and "Paid" in await r.text()
    await world.invite_for(BUYER)
    (ev,) = await world.rows(WebhookEvent)
    assert ev.provider == "sandbox" and ev.processed_at is not None


async def test_deep_link_help_language_and_unknown_input(world: World):
    group_no = await world.set_up_shop()
    plans = await world.ask(BUYER, f"/start g_{group_no}", match=lambda m: bool(m.callback_data))
    assert "pick a plan" in plans.text
    unknown = await world.ask(BUYER, "what is this", match=lambda m: "/start" in (m.text or ""))
    assert "did not understand" in unknown.text
    pick = await world.ask(BUYER, "/language", match=lambda m: bool(m.callback_data))
    done = await world.press(BUYER, pick, "lang:zh")
    assert done.text == "语言已设置为中文。"
    helped = await world.ask(BUYER, "/help", match=lambda m: "/start" in (m.text or ""))
    assert "浏览群组" in helped.text


async def test_bundle_plan_and_several_prices(world: World):
    await world.set_up_shop()
    await world.tg.create_chat(-1005678, creator_id=OWNER, title="Traders VIP")
    await world.tg.promote(
        -1005678, BOT_ID, {"can_invite_users": True, "can_restrict_members": True}, by=OWNER
    )
    second = await world.ask(
        OWNER, "/setup", chat=-1005678, match=lambda m: "group #" in (m.text or "")
    )
    second_no = int(second.text.split("group #")[1].split()[0])
    reply = await world.ask(
        OWNER,
        f"/addplan 1,{second_no} 1y 49EUR 59USD Both groups",
        match=lambda m: "Plan #" in (m.text or ""),
    )
    assert "49.00 EUR, 59.00 USD" in reply.text
    await world.stripe.pay(session_id(await world.checkout(currency="EUR", plan=2)))

    async def two_invites() -> bool:
        return await world.count(Invite) == 2

    await world.eventually(two_invites)
    assert {m.chat_group_id for m in await world.rows(Membership)} == {1, second_no}


async def test_whitelisted_member_may_stay_without_paying(world: World):
    group_no = await world.set_up_shop()
    bad = await world.ask(
        OWNER, f"/whitelist @nobody {group_no}", match=lambda m: "Usage" in (m.text or "")
    )
    assert "@nobody" in bad.text
    ok = await world.ask(
        OWNER,
        f"/whitelist {STRANGER} {group_no}",
        match=lambda m: "without a paid membership" in (m.text or ""),
    )
    assert ok
    await world.tg.add_member(GROUP, STRANGER, by=OWNER)
    await asyncio.sleep(0.5)
    assert await world.tg.member_status(GROUP, STRANGER) == "member"
    await world.ask(
        OWNER,
        f"/unwhitelist {STRANGER} {group_no}",
        match=lambda m: "off the whitelist" in (m.text or ""),
    )
    await world.tg.leave_chat(GROUP, STRANGER)
    await world.tg.add_member(GROUP, STRANGER, by=OWNER)
    await world.wait_status(GROUP, STRANGER, "left")
