"""Issue 6, exactly-once at the Telegram edge, end to end in polling AND webhook mode: the
real service, the Bot API emulator failing the way Telegram does (502, 429 with retry_after,
lost answers, redelivered updates), and people using invites the way they should not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update
from sqlmodel import col

from sandbox.telegram.client import SentMessage
from storage.models import Invite, Order, Outbox, Plan, TelegramUpdate
from tests.e2e.conftest import start_world, stop_world
from tests.e2e.world import BUYER, GROUP, OWNER, STRANGER, World

WEBHOOK_SECRET = "e2e-webhook-secret"


@pytest.fixture(params=["polling", "webhook"])
async def world(
    request: pytest.FixtureRequest, db_url: tuple[str, str | None]
) -> AsyncIterator[World]:
    telegram: dict[str, object] = {"mode": request.param}
    if request.param == "webhook":
        telegram["webhook_secret"] = WEBHOOK_SECRET
    w, emulator = await start_world(db_url, **telegram)
    try:
        yield w
    finally:
        await stop_world(w, emulator)


def _text(needle: str):
    return lambda m: needle in (m.text or "")


def _invite(m: SentMessage) -> str | None:
    return next((u for u in m.button_urls if "t.me/+" in u), None)


async def _settled(world: World) -> None:
    """Every update the emulator holds has been taken (and, in webhook mode, answered 2xx)."""

    async def nothing_pending() -> bool:
        return await world.tg.pending_updates() == 0

    await world.eventually(nothing_pending)


async def _setup_group(world: World, mode: str = "") -> int:
    reply = await world.ask(OWNER, f"/setup {mode}".strip(), chat=GROUP, match=_text("group #"))
    return int((reply.text or "").split("group #")[1].split()[0].strip("(),"))


async def test_a_reply_that_fails_with_502_does_not_apply_addplan_twice(world: World):
    group_no = await _setup_group(world)
    await world.tg.inject_fault("sendMessage", error_code=502, count=1)
    await world.ask(OWNER, f"/addplan {group_no} 30d 4.99USD Monthly", match=_text("Plan #"))
    await _settled(world)
    assert await world.count(Plan) == 1
    sends = [
        c
        for c in await world.tg.calls("sendMessage")
        if c["params"].get("chat_id") == str(OWNER) or c["params"].get("chat_id") == OWNER
    ]
    assert [c["ok"] for c in sends][-2:] == [False, True]  # the 502, then the retry
    said = [m for m in await world.tg.sent_messages(OWNER) if "Plan #" in (m.text or "")]
    assert len(said) == 1


async def test_the_same_update_delivered_again_is_applied_once(world: World):
    group_no = await _setup_group(world)
    webhook = world.service.settings.telegram.mode == "webhook"
    if webhook:
        await world.tg.lose_webhook_answers(1)  # our 200 never reaches Telegram
    await world.ask(OWNER, f"/addplan {group_no} 30d 4.99USD Monthly", match=_text("Plan #"))
    if not webhook:
        await _settled(world)
        await world.tg.redeliver_update()  # a replica died before confirming the offset
    sessions = world.service.telegram.sessions

    async def seen_again() -> bool:
        return sessions.duplicates >= 1

    await world.eventually(seen_again)
    await _settled(world)
    assert await world.count(Plan) == 1
    said = [m for m in await world.tg.sent_messages(OWNER) if "Plan #" in (m.text or "")]
    assert len(said) == 1
    assert await world.count(TelegramUpdate) >= 1


async def _to_pay_button(world: World, buyer: int = BUYER) -> SentMessage:
    groups = await world.ask(buyer, "/start", match=lambda m: bool(m.callback_data))
    plans = await world.press(buyer, groups, "grp:", match=lambda m: bool(m.callback_data))
    return await world.press(buyer, plans, "pln:", match=lambda m: bool(m.callback_data))


async def _assert_no_orphan(world: World, pay: SentMessage) -> None:
    (order,) = await world.rows(Order)
    assert order.status == "pending" and order.checkout_url
    assert pay.button_urls == [order.checkout_url]  # the buyer holds the order's own link


async def test_a_429_on_the_checkout_reply_still_delivers_the_payment_link(world: World):
    await world.set_up_shop()
    methods = await _to_pay_button(world)
    await world.tg.inject_fault("sendMessage", error_code=429, retry_after=1, count=1)
    pay = await world.press(
        BUYER,
        methods,
        "pay:",
        match=lambda m: bool(m.button_urls),
        suffix=":stripe:USD",
        timeout=10,
    )
    await _assert_no_orphan(world, pay)
    assert world.service.telegram.replies.limiter is not None


async def test_a_long_429_hands_the_checkout_link_to_the_outbox(world: World):
    """retry_after longer than a handler waits: the update is acknowledged at once and the
    outbox worker sends the link when Telegram allows it."""
    await world.set_up_shop()
    methods = await _to_pay_button(world)
    await world.tg.inject_fault("sendMessage", error_code=429, retry_after=7, count=1)
    pay = await world.press(
        BUYER,
        methods,
        "pay:",
        match=lambda m: bool(m.button_urls),
        suffix=":stripe:USD",
        timeout=15,
    )
    await _assert_no_orphan(world, pay)
    await _settled(world)
    (row,) = await world.rows(Outbox, col(Outbox.kind) == "reply")  # the one the worker sent
    assert row.status == "done" and row.attempts >= 1


async def test_a_failed_callback_answer_still_sends_the_reply(world: World):
    await world.set_up_shop()
    groups = await world.ask(BUYER, "/start", match=lambda m: bool(m.callback_data))
    await world.tg.inject_fault("answerCallbackQuery", error_code=502, count=5)
    plans = await world.press(BUYER, groups, "grp:", match=lambda m: bool(m.callback_data))
    assert "pick a plan" in (plans.text or "")
    failed = [c for c in await world.tg.calls("answerCallbackQuery") if not c["ok"]]
    assert len(failed) == 1  # tried once: a spinner is not worth holding the reply for


async def test_a_stranger_using_a_buyers_single_use_link_is_removed_and_the_buyer_reinvited(
    world: World,
):
    from tests.e2e.test_buy_with_stripe import session_id

    await world.set_up_shop(mode="single_use")
    await world.stripe.pay(session_id(await world.checkout()))
    first = await world.invite_for(BUYER)
    assert await world.tg.join_by_link(STRANGER, first) == "joined"  # forwarded, and used
    await world.wait_status(GROUP, STRANGER, "left")  # no access: removed
    fresh = await world.tg.wait_for_message(
        BUYER, lambda m: (_invite(m) or first) != first, timeout=10
    )
    assert "Someone else used your invite" in (fresh.text or "")
    second = _invite(fresh)
    assert second is not None
    links = {link["invite_link"]: link for link in await world.tg.invite_links(GROUP)}

    async def first_revoked() -> bool:
        links.update({x["invite_link"]: x for x in await world.tg.invite_links(GROUP)})
        return bool(links[first].get("is_revoked"))

    await world.eventually(first_revoked)
    old, new = sorted(await world.rows(Invite), key=lambda i: i.id)
    assert (old.revoked, old.used_by, new.link) == (True, str(STRANGER), second)
    # /my never offers the burned link again: the button sends the fresh one.
    my = await world.ask(BUYER, "/my", match=lambda m: bool(m.callback_data))
    again = await world.press(BUYER, my, "myinv:", match=lambda m: _invite(m) is not None)
    assert _invite(again) == second
    assert await world.tg.join_by_link(BUYER, second) == "joined"
    await world.wait_status(GROUP, BUYER, "member")


async def test_a_redelivered_invite_row_reuses_the_link_it_made(world: World):
    """A worker killed after storing the invite but before settling its row: the row comes
    back, and the buyer is sent the same link, not a second one."""
    from tests.e2e.test_buy_with_stripe import session_id

    await world.set_up_shop(mode="single_use")
    await world.stripe.pay(session_id(await world.checkout()))
    first = await world.invite_for(BUYER)
    async with world.db.transaction() as s:
        await s.execute(
            update(Outbox)
            .where(col(Outbox.kind) == "deliver_invite")
            .values(status="pending", next_attempt_at=world.clock.now())
        )
    world.service.wake_outbox()

    async def sent_twice() -> bool:
        return len([m for m in await world.tg.sent_messages(BUYER) if _invite(m)]) == 2

    await world.eventually(sent_twice, timeout=10)
    links = [_invite(m) for m in await world.tg.sent_messages(BUYER) if _invite(m)]
    assert links == [first, first]
    assert len(await world.tg.calls("createChatInviteLink")) == 1
    assert len(await world.rows(Invite)) == 1
