"""Issue 3, the buyer's and owner's tools, end to end: /grant, /revoke, /members, /stats,
/export, /my, /orders, /cancel, driven through the Bot API emulator and the Stripe host."""

from __future__ import annotations

import csv
import io

from sqlmodel import col

from storage.models import AuditLog, Membership, Order, Outbox
from tests.e2e.world import BUYER, GROUP, OWNER, STRANGER, World


def _text(needle: str):
    return lambda m: needle in (m.text or "")


def session_id(checkout_url: str) -> str:
    return checkout_url.rstrip("/").rsplit("/", 1)[1]


async def test_owner_grants_then_revokes(world: World):
    group_no = await world.set_up_shop()
    (owner,) = [u for u in await world.rows(AuditLog) if u.action == "group.setup"]
    reply = await world.ask(OWNER, f"/grant @bob {group_no} 30d", match=_text("has access"))
    assert "@bob (2002)" in reply.text and "Traders Club" in reply.text
    await world.wait_text(BUYER, "The owner of Traders Club gave you access until")
    invite = await world.wait_text(BUYER, "You have been given access to Traders Club")
    assert "Payment" not in invite.text  # nobody paid: no thanks for a payment
    link = await world.invite_for(BUYER)
    assert await world.tg.join_by_link(BUYER, link) == "requested"
    await world.wait_status(GROUP, BUYER, "member")

    members = await world.ask(OWNER, f"/members {group_no}", match=_text("active member"))
    assert (
        members.text.splitlines()[0]
        == f"Traders Club (#{group_no}): 1 active member (0 with lifetime access, 0 renewing "
        "automatically), 0 ended."
    )
    assert members.text.splitlines()[1].startswith("@bob (2002): until ")

    since = await world.last_id(BUYER)
    reply = await world.ask(OWNER, f"/revoke {BUYER} {group_no}", match=_text("no longer"))
    assert "@bob (2002) no longer has access to Traders Club" in reply.text
    await world.wait_status(GROUP, BUYER, "left")
    unbans = await world.tg.calls("unbanChatMember")
    assert len(await world.tg.calls("banChatMember")) == 1 and unbans[0]["params"]["only_if_banned"]
    await world.wait_text(BUYER, "ended your access", since=since)
    (m,) = await world.rows(Membership)
    assert m.status == "revoked"
    actions = {(a.actor, a.action) for a in await world.rows(AuditLog)}
    assert {(owner.actor, "membership.grant"), (owner.actor, "membership.revoked")} <= actions


async def test_bad_owner_arguments_say_why_and_change_nothing(world: World):
    group_no = await world.set_up_shop()
    outbox = await world.count(Outbox, col(Outbox.kind) != "reply")
    for text, reason in [
        ("/grant", "Some arguments are missing"),
        (f"/grant bob {group_no} 30d", "'bob' is not a user"),
        (f"/grant @bob {group_no} 3x", "not a duration"),
        (f"/grant @nobody {group_no} 30d", "I do not know @nobody"),
        ("/grant @bob 99 30d", "There is no group 99"),
        (f"/revoke @bob {group_no}", "@bob has no access to Traders Club"),
        (f"/members {group_no} extra", "Too many arguments: 'extra'"),
        ("/export abc", "'abc' is not a group number"),
    ]:
        reply = await world.ask(OWNER, text, match=_text("Usage:"))
        assert reason in reply.text.splitlines()[0], (text, reply.text)
        assert reply.text.splitlines()[1].startswith(f"Usage: /{text[1:].split()[0]}")
    stranger = await world.ask(BUYER, f"/members {group_no}", match=_text("Usage:"))
    assert "not yours" in stranger.text
    assert await world.count(Membership) == 0
    assert await world.count(Outbox, col(Outbox.kind) != "reply") == outbox


async def test_buyer_tools_and_owner_figures_after_a_purchase(world: World):
    group_no = await world.set_up_shop()
    nothing = await world.ask(BUYER, "/cancel", match=_text("nothing to cancel"))
    assert "/my" in nothing.text
    await world.ask(BUYER, "/orders", match=_text("no orders yet"))
    await world.stripe.pay(session_id(await world.checkout()))
    await world.invite_for(BUYER)
    (order,) = await world.rows(Order)

    my = await world.ask(BUYER, "/my", match=_text("Your access"))
    assert my.text.splitlines()[1].startswith("• Traders Club: until ")
    assert my.callback_data == [f"myinv:{order.id}", f"grp:{group_no}"]
    plans = await world.press(BUYER, my, "grp:", match=_text("pick a plan"))  # renew
    assert plans.callback_data
    again = await world.press(BUYER, my, "myinv:", match=lambda m: "t.me/+" in str(m.button_urls))
    assert "Here is your invite to Traders Club again" in again.text

    orders = await world.ask(BUYER, "/orders", match=_text("Your orders"))
    line = orders.text.splitlines()[1]
    assert line.startswith(order.order_no) and line.endswith(
        "· Monthly access · 4.99 USD · stripe · paid"
    )

    stats = await world.ask(OWNER, "/stats", match=_text("Figures as of"))
    assert f"#{group_no} Traders Club: 1 active member" in stats.text
    assert (
        "Revenue, net of refunds and disputes: 4.99 USD all time; 4.99 USD in the last "
        "30 days" in stats.text
    )
    assert "0 renewals in the last 30 days" in stats.text
    assert "Churn over 30 days: 0 ended of 0 active 30 days ago (n/a)" in stats.text

    doc = await world.ask(OWNER, f"/export {group_no}", match=lambda m: m.kind == "document")
    assert doc.document["file_name"].startswith(f"gatepass-group{group_no}-")
    assert "1 membership and 1 order," in (doc.text or "")
    rows = list(csv.DictReader(io.StringIO((doc.document_bytes or b"").decode("utf-8-sig"))))
    assert [(r["record"], r["telegram_id"], r["status"]) for r in rows] == [
        ("member", str(BUYER), "active"),
        ("order", str(BUYER), "paid"),
    ]
    assert (rows[1]["order_no"], rows[1]["amount"], rows[1]["currency"]) == (
        order.order_no,
        "4.99",
        "USD",
    )

    # A stranger sees none of it; the buyer's tools in the group point to the private chat.
    await world.tg.send_text(STRANGER, "/help")
    await world.ask(STRANGER, "/my", match=_text("no access yet"))
    await world.ask(STRANGER, "/stats", match=_text("no groups yet"))
    await world.tg.add_member(GROUP, BUYER, by=OWNER)
    await world.ask(BUYER, "/my", chat=GROUP, match=_text("private chat"))


async def test_cancel_and_revoke_stop_subscriptions_at_stripe(world: World):
    await world.set_up_shop()
    await world.ask(OWNER, "/addsub 1 1m 9.99USD Monthly club", match=_text("renews automatically"))
    sid = session_id(await world.checkout(plan=2))
    await world.stripe.pay(sid)
    await world.invite_for(BUYER)
    sub_id = world.stripe.sessions[sid]["subscription"]

    async def renewing() -> bool:
        return any(m.auto_renew for m in await world.rows(Membership))

    await world.eventually(renewing)
    my = await world.ask(BUYER, "/my", match=_text("renews automatically"))
    (m,) = await world.rows(Membership)
    assert my.callback_data == [f"myinv:{m.id}", f"myoff:{m.id}"]
    done = await world.press(BUYER, my, "myoff:", match=_text("Auto-renew is off"))
    assert "Traders Club" in done.text
    assert world.stripe.subscriptions[sub_id]["cancel_at_period_end"] is True
    (m,) = await world.rows(Membership)
    assert (m.auto_renew, m.status) == (False, "active")
    await world.ask(BUYER, "/cancel", match=_text("nothing to cancel"))

    # The owner revokes another subscriber: Stripe is told to stop charging them first.
    await world.tg.send_text(STRANGER, "/help")
    sid2 = session_id(await world.checkout(STRANGER, plan=2))
    await world.stripe.pay(sid2)
    await world.invite_for(STRANGER)
    await world.eventually(lambda: world.count(Membership, col(Membership.auto_renew).is_(True)))
    reply = await world.ask(OWNER, "/revoke @sam 1", match=_text("no longer"))
    assert "Their automatic renewal is stopped as well." in reply.text
    sub2 = world.stripe.sessions[sid2]["subscription"]
    assert world.stripe.subscriptions[sub2]["cancel_at_period_end"] is True
    got = sorted(await world.rows(Membership), key=lambda m: m.id)
    assert [(m.status, m.auto_renew) for m in got] == [("active", False), ("revoked", False)]
