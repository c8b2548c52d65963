"""Channels end to end: registered from the private chat (by @username or a forwarded post),
sold in a bundle with a group through Stripe, guarded like a group, and Telegram's own Star
subscription links recorded from chat_member updates."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

from sqlmodel import col

from storage.models import ChatGroup, Membership
from tests.e2e.world import BOT_ID, BUYER, GROUP, OWNER, STRANGER, World

CHANNEL = -1005678
CHANNEL_NAME = "traders_news"
FRIEND = 4004


def session_id(checkout_url: str) -> str:
    return checkout_url.rstrip("/").rsplit("/", 1)[1]


def number_after(text: str, marker: str) -> int:
    return int(text.split(marker)[1].split()[0].strip("(),"))


async def make_channel(world: World, rights: dict[str, bool] | None = None) -> None:
    await world.tg.create_chat(
        CHANNEL, creator_id=OWNER, type="channel", title="Traders News", username=CHANNEL_NAME
    )
    await world.tg.promote(
        CHANNEL,
        BOT_ID,
        rights if rights is not None else {"can_invite_users": True, "can_post_messages": True},
        by=OWNER,
    )


async def setup_channel(world: World) -> int:
    reply = await world.ask(
        OWNER, f"/setup @{CHANNEL_NAME}", match=lambda m: "channel #" in (m.text or "")
    )
    return number_after(reply.text or "", "channel #")


async def setup_group(world: World) -> int:
    reply = await world.ask(
        OWNER, "/setup", chat=GROUP, match=lambda m: "group #" in (m.text or "")
    )
    return number_after(reply.text or "", "group #")


async def sweep(world: World, **delta: float) -> None:
    world.clock.advance(timedelta(**delta))
    await world.service.sweeps.run_sweeps_once(world.clock.now())


async def test_owner_registers_a_channel_by_username(world: World):
    await make_channel(world)
    number = await setup_channel(world)
    (group,) = await world.rows(ChatGroup)
    assert (group.id, group.chat_id, group.chat_type) == (number, str(CHANNEL), "channel")
    plans = await world.ask(OWNER, "/plans", match=lambda m: "Channel #" in (m.text or ""))
    assert f"Channel #{number} Traders News" in (plans.text or "")


async def test_owner_registers_a_channel_by_forwarding_a_post(world: World):
    await make_channel(world)
    post = await world.tg.post_in_channel(CHANNEL, OWNER, "Market open!")
    since = await world.last_id(OWNER)
    await world.tg.forward_to_bot(OWNER, CHANNEL, post)
    reply = await world.tg.wait_for_message(
        OWNER, lambda m: "channel #" in (m.text or ""), since=since
    )
    assert "Traders News is registered as channel #1" in (reply.text or "")
    (group,) = await world.rows(ChatGroup)
    assert group.chat_type == "channel"


async def test_channel_setup_names_the_missing_right(world: World):
    await make_channel(world, {"can_post_messages": True, "can_invite_users": False})
    reply = await world.ask(
        OWNER, f"/setup @{CHANNEL_NAME}", match=lambda m: "Missing" in (m.text or "")
    )
    missing = (reply.text or "").split("Missing:")[1].split(".")[0]
    assert "invite users via link" in missing and "ban" not in missing
    # A public channel the bot is not an administrator of at all.
    await world.tg.create_chat(-1009999, creator_id=OWNER, type="channel", username="olga_blog")
    reply = await world.ask(OWNER, "/setup @olga_blog", match=lambda m: "Missing" in (m.text or ""))
    assert "Missing: administrator status." in (reply.text or "")
    assert await world.count(ChatGroup) == 0


async def test_channel_setup_refuses_who_is_not_the_creator(world: World):
    await make_channel(world)
    await world.tg.promote(CHANNEL, STRANGER, {"can_post_messages": True}, by=OWNER)
    post = await world.tg.post_in_channel(CHANNEL, STRANGER, "hello")
    reply = await world.ask(
        STRANGER, f"/setup @{CHANNEL_NAME}", match=lambda m: "creator" in (m.text or "")
    )
    assert "Only the creator of the channel Traders News" in (reply.text or "")
    since = await world.last_id(STRANGER)
    await world.tg.forward_to_bot(STRANGER, CHANNEL, post)
    await world.tg.wait_for_message(STRANGER, lambda m: "creator" in (m.text or ""), since=since)
    assert await world.count(ChatGroup) == 0


async def _buy_bundle(world: World) -> tuple[int, int, dict[str, str]]:
    """Owner sells a group + channel bundle; Bob pays with Stripe and gets both invites."""
    await make_channel(world)
    group_no, channel_no = await setup_group(world), await setup_channel(world)
    await world.ask(
        OWNER,
        f"/addplan {group_no},{channel_no} 30d 9.99USD Bundle",
        match=lambda m: "Plan #" in (m.text or ""),
    )
    assert await world.stripe.pay(session_id(await world.checkout())) == 200
    links: dict[str, str] = {}

    async def both_invites() -> bool:
        for m in await world.tg.sent_messages(BUYER):
            for url in m.button_urls:
                if "t.me/+" in url:
                    links["news" if "Traders News" in (m.text or "") else "club"] = url
        return len(links) == 2

    await world.eventually(both_invites)
    return group_no, channel_no, links


async def test_bundle_with_a_channel_bought_with_stripe(world: World):
    _, _, links = await _buy_bundle(world)
    channel_links = [x for x in await world.tg.invite_links(CHANNEL) if x["creator_id"] == BOT_ID]
    assert [x["creates_join_request"] for x in channel_links] == [True]
    assert await world.tg.join_by_link(BUYER, links["club"]) == "requested"
    assert await world.tg.join_by_link(BUYER, links["news"]) == "requested"
    await world.wait_status(GROUP, BUYER, "member")
    await world.wait_status(CHANNEL, BUYER, "member")
    # Bob's channel link, forwarded: the stranger's request is declined and he is told why.
    assert await world.tg.join_by_link(STRANGER, links["news"]) == "requested"
    declined = await world.wait_text(STRANGER, "declined")
    assert "Traders News" in (declined.text or "")

    async def no_requests() -> bool:
        return await world.tg.join_requests(CHANNEL) == []

    await world.eventually(no_requests)
    assert await world.tg.member_status(CHANNEL, STRANGER) == "left"
    approvals = await world.tg.calls("approveChatJoinRequest")
    assert sorted(c["params"]["chat_id"] for c in approvals) == sorted([str(GROUP), str(CHANNEL)])


async def test_expiry_removes_the_buyer_from_the_channel(world: World):
    _, _, links = await _buy_bundle(world)
    await world.tg.join_by_link(BUYER, links["news"])
    await world.wait_status(CHANNEL, BUYER, "member")
    await sweep(world, days=31, hours=1)
    await world.wait_status(CHANNEL, BUYER, "left")

    # Ban then unban with only_if_banned, in the channel as in the group: he may come back.
    async def unbanned_in_both() -> bool:
        unbans = [c for c in await world.tg.calls("unbanChatMember") if c["ok"]]
        return {c["params"]["chat_id"] for c in unbans} == {str(GROUP), str(CHANNEL)}

    await world.eventually(unbanned_in_both)
    bans = [c for c in await world.tg.calls("banChatMember") if c["ok"]]
    assert {c["params"]["chat_id"] for c in bans} == {str(GROUP), str(CHANNEL)}
    unbans = await world.tg.calls("unbanChatMember")
    assert all(c["params"]["only_if_banned"] in (True, "true") for c in unbans)
    assert {m.status for m in await world.rows(Membership)} == {"expired"}
    assert await world.tg.join_by_link(BUYER, links["news"]) != "banned"


async def test_intruder_in_the_channel_is_removed_unless_whitelisted(world: World):
    await make_channel(world)
    channel_no = await setup_channel(world)
    await world.tg.create_user(FRIEND, "Fay", language_code="en")
    await world.ask(
        OWNER, f"/whitelist {FRIEND} {channel_no}", match=lambda m: "may now stay" in (m.text or "")
    )
    await world.tg.add_member(CHANNEL, FRIEND, by=OWNER)
    await world.tg.add_member(CHANNEL, STRANGER, by=OWNER)
    await world.wait_status(CHANNEL, STRANGER, "left")
    assert await world.tg.member_status(CHANNEL, FRIEND) == "member"
    banned = {c["params"]["user_id"] for c in await world.tg.calls("banChatMember")}
    assert banned == {str(STRANGER)}


STAR_LINK = re.compile(r"https://t\.me/\+\S+")


async def test_star_subscription_link_is_recorded_and_left_to_telegram(world: World):
    await make_channel(world)
    group_no, channel_no = await setup_group(world), await setup_channel(world)
    refused = await world.ask(
        OWNER, f"/starlink {group_no} 250XTR", match=lambda m: "Usage:" in (m.text or "")
    )
    assert "channels only" in (refused.text or "")
    created = await world.ask(
        OWNER, f"/starlink {channel_no} 250XTR VIP", match=lambda m: "t.me/+" in (m.text or "")
    )
    match = STAR_LINK.search(created.text or "")
    assert match is not None
    link = match[0]
    (made,) = await world.tg.calls("createChatSubscriptionInviteLink")
    assert made["params"]["subscription_period"] in (2592000, "2592000")

    # Bob pays Telegram 250 Stars and joins; gatepass records him until Telegram's end date.
    assert await world.tg.join_by_link(BUYER, link) == "joined"
    (sub,) = await world.tg.channel_subscriptions()
    assert [c["amount"] for c in sub["charges"]] == [250]

    async def recorded() -> list[Membership]:
        return await world.rows(Membership, col(Membership.star_link) == link)

    await world.eventually(recorded)
    (m,) = await recorded()
    assert m.status == "active" and int(m.expires_at.timestamp()) == sub["until_date"]

    members = await world.ask(
        OWNER, f"/members {channel_no}", match=lambda m: "Traders News" in (m.text or "")
    )
    assert "1 of them through a Telegram Star subscription" in (members.text or "")
    assert "@bob (2002): Star subscription, paid until" in (members.text or "")
    stats = await world.ask(OWNER, "/stats", match=lambda m: "Figures" in (m.text or ""))
    assert "1 of them through a Telegram Star subscription" in (stats.text or "")
    assert "not in the revenue" in (stats.text or "")
    assert "nothing all time" in (stats.text or "")  # no revenue row is invented
    doc = await world.ask(OWNER, f"/export {channel_no}", match=lambda m: m.kind == "document")
    rows = list(csv.DictReader(io.StringIO((doc.document_bytes or b"").decode("utf-8-sig"))))
    (row,) = [r for r in rows if r["record"] == "member"]
    assert (row["telegram_id"], row["provider"]) == (str(BUYER), "telegram_star_subscription")

    # Our clock passes the end (and the grace period) while Telegram's period still runs:
    # our sweeps leave him alone; Telegram removes its subscribers itself.
    await sweep(world, days=31, hours=1)
    assert await world.tg.member_status(CHANNEL, BUYER) == "member"
    assert await world.tg.calls("banChatMember") == []
    (m,) = await recorded()
    assert m.status == "active"

    # Telegram renews: the chat_member update's until_date moves our end date on.
    renewed = await world.tg.renew_subscription(CHANNEL, BUYER)

    async def extended() -> bool:
        (row,) = await recorded()
        return int(row.expires_at.timestamp()) == renewed["until_date"]

    await world.eventually(extended)
    assert renewed["until_date"] == sub["until_date"] + 2592000

    # Telegram's clock passes the renewed end: it removes him, and that ends our record.
    await world.tg.advance_clock(61 * 24 * 3600)

    async def ended() -> bool:
        (row,) = await recorded()
        return row.status == "expired"

    await world.eventually(ended)
    assert await world.tg.member_status(CHANNEL, BUYER) == "left"
    assert await world.tg.calls("banChatMember") == []
