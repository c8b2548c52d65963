"""A WeChat Pay refund answers PROCESSING; its outcome comes by notification. When that
notification is lost, the outbox's `refund_check` (billing/provider_calls.py), due
REFUND_CHECK_AFTER later, asks WeChat Pay (GET /v3/refund/domestic/refunds/{out_refund_no})
and applies the outcome through the webhook path: once, whichever of the two comes first.

Time is the world's movable clock; the service's outbox worker runs the check once it is due.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlmodel import col

from billing.provider_calls import REFUND_CHECK_AFTER, REFUND_CHECK_FOR
from sandbox.wechatpay.merchant import Order as WxOrder
from sandbox.wechatpay.merchant import Refund as WxRefund
from sandbox.wechatpay_host import FakeWechatPay
from storage.models import AuditLog, Membership, Order, Outbox, Payment
from tests.e2e.conftest import start_world, stop_world
from tests.e2e.test_wechatpay import WrongAmount, has, open_order, status_is
from tests.e2e.world import BUYER, GROUP, OWNER, World

LATER = REFUND_CHECK_AFTER + timedelta(minutes=1)


@pytest.fixture
async def wx(db_url: tuple[str, str | None]) -> AsyncIterator[tuple[World, FakeWechatPay]]:
    host = FakeWechatPay()
    world, emulator = await start_world(db_url, hosts=[host])
    try:
        await world.set_up_shop("30d 9.90CNY 月卡 Monthly")
        yield world, host
    finally:
        await stop_world(world, emulator)


async def bought(world: World, host: FakeWechatPay) -> tuple[Order, WxOrder]:
    """The buyer paid 9.90 CNY and is in the group."""
    order = (await open_order(world)).order
    paid = host.pay(order.order_no)
    link = await world.invite_for(BUYER)
    assert await world.tg.join_by_link(BUYER, link) == "requested"
    await world.wait_status(GROUP, BUYER, "member")
    return order, paid


async def refund_asked(world: World, host: FakeWechatPay, order: Order) -> tuple[WxRefund, Outbox]:
    """The owner's /refund reached WeChat Pay; the follow-up check is queued, not yet due."""
    await world.ask(OWNER, f"/refund {order.order_no}", match=has("requested"))

    async def queued() -> bool:
        return await world.count(Outbox, col(Outbox.kind) == "refund_check") == 1

    await world.eventually(queued)
    (refund,) = host.refunds
    (check,) = await world.rows(Outbox, col(Outbox.kind) == "refund_check")
    assert check.status == "pending" and check.attempts == 0
    assert check.next_attempt_at >= world.clock.now() + REFUND_CHECK_AFTER - timedelta(minutes=1)
    return refund, check


async def check_row(world: World) -> Outbox:
    (check,) = await world.rows(Outbox, col(Outbox.kind) == "refund_check")
    return check


async def check_ends(world: World, status: str = "done") -> Outbox:
    async def ended() -> bool:
        return (await check_row(world)).status == status

    await world.eventually(ended)
    return await check_row(world)


async def refund_rows(world: World) -> list[Payment]:
    return await world.rows(Payment, col(Payment.kind) == "refund")


async def messages(world: World, chat: int) -> int:
    return len(await world.tg.sent_messages(chat, everyone=True))


async def queued_notes(world: World) -> list[str]:
    """The keys of every chat message queued so far (queued with the event that caused it,
    so once an event is applied, this is complete, delivered or not)."""
    rows = await world.rows(Outbox, col(Outbox.kind) == "notify")
    return sorted(str(r.payload.get("key")) for r in rows)


async def settled_at_wechat(world: World, host: FakeWechatPay, status: str) -> None:
    async def settled() -> bool:
        return bool(host.refunds) and host.refunds[0].status == status

    await world.eventually(settled)


async def stats(world: World) -> str:
    answer = await world.ask(OWNER, "/stats", match=has("Revenue"))
    return answer.text or ""


async def test_a_lost_refund_success_is_recorded_by_the_check(wx):
    world, host = wx
    order, paid = await bought(world, host)
    host.lose_next(1)  # REFUND.SUCCESS never reaches us
    refund, _ = await refund_asked(world, host, order)
    assert refund.order.transaction_id == paid.transaction_id
    await settled_at_wechat(world, host, "SUCCESS")
    assert host.notifications[-1].event_type == "REFUND.SUCCESS" and host.notifications[-1].lost
    assert await refund_rows(world) == []
    assert "9.90 CNY all time" in await stats(world)

    since_buyer = await world.last_id(BUYER)
    world.clock.advance(LATER)
    await world.wait_text(OWNER, f"Refund: 9.90 CNY of order {order.order_no}")
    await world.wait_status(GROUP, BUYER, "left")
    await world.wait_text(BUYER, "was refunded", since=since_buyer)
    await status_is(world, order.order_no, "refunded")
    await check_ends(world)
    (back,) = await refund_rows(world)
    assert (back.amount_minor, back.provider_payment_id) == (990, refund.refund_id)
    (m,) = await world.rows(Membership)
    assert m.status == "revoked"
    assert "9.90 CNY all time" not in await stats(world)
    # The charge is refunded, not "requested": asked again, it says so; WeChat is not asked.
    await world.ask(OWNER, f"/refund {order.order_no}", match=has("refunded already"))
    assert len(host.refunds) == 1
    # The notification, delivered after all, changes nothing.
    notes = await queued_notes(world)
    assert notes.count("owner_refund") == notes.count("buyer_refund_ended") == 1
    assert (await host.notifier.resend(host.notifications[-1].id)).status == 204
    assert len(await refund_rows(world)) == 1
    assert await queued_notes(world) == notes


async def test_the_check_after_the_notification_changes_nothing(wx):
    world, host = wx
    order, _ = await bought(world, host)
    refund, _ = await refund_asked(world, host, order)
    await world.wait_text(OWNER, f"Refund: 9.90 CNY of order {order.order_no}")
    await world.wait_text(BUYER, "was refunded")
    await status_is(world, order.order_no, "refunded")
    owner_msgs, buyer_msgs = await messages(world, OWNER), await messages(world, BUYER)
    notes = await queued_notes(world)

    world.clock.advance(LATER)
    check = await check_ends(world)
    assert check.attempts == 1
    assert [(p.amount_minor, p.provider_payment_id) for p in await refund_rows(world)] == [
        (990, refund.refund_id)
    ]
    assert await queued_notes(world) == notes
    assert (await messages(world, OWNER), await messages(world, BUYER)) == (
        owner_msgs,
        buyer_msgs,
    )
    assert ("GET", f"/v3/refund/domestic/refunds/{refund.out_refund_no}", 200) in host.requests


async def test_a_lost_abnormal_refund_clears_the_request_and_tells_the_owner_once(wx):
    world, host = wx
    order, _ = await bought(world, host)
    host.refund_outcome = "ABNORMAL"
    host.lose_next(1)
    await refund_asked(world, host, order)
    await settled_at_wechat(world, host, "ABNORMAL")
    (charge,) = await world.rows(Payment)
    assert charge.refund_requested_at is not None

    world.clock.advance(LATER)
    told = await world.wait_text(OWNER, "was refused")
    assert "REFUND.ABNORMAL" in (told.text or "") and "9.90 CNY" in (told.text or "")
    await check_ends(world)
    (charge,) = await world.rows(Payment)
    assert charge.refund_requested_at is None
    assert await refund_rows(world) == []
    assert (await world.rows(Membership))[0].status == "active"
    await status_is(world, order.order_no, "paid")
    # Told once: the notification sent after all is not a second word.
    assert (await queued_notes(world)).count("owner_refund_failed") == 1
    assert (await host.notifier.resend(host.notifications[-1].id)).status == 204
    assert (await queued_notes(world)).count("owner_refund_failed") == 1
    # No longer "requested": the owner may ask again.
    await world.ask(OWNER, f"/refund {order.order_no}", match=has("requested"))


async def test_an_abnormal_refund_notified_in_time_is_not_told_twice(wx):
    world, host = wx
    order, _ = await bought(world, host)
    host.refund_outcome = "ABNORMAL"
    await refund_asked(world, host, order)
    await world.wait_text(OWNER, "was refused")
    owner_msgs = await messages(world, OWNER)

    world.clock.advance(LATER)
    await check_ends(world)
    assert (await queued_notes(world)).count("owner_refund_failed") == 1
    assert await messages(world, OWNER) == owner_msgs
    (charge,) = await world.rows(Payment)
    assert charge.refund_requested_at is None


async def test_a_refund_still_processing_is_asked_again_until_it_settles(wx):
    world, host = wx
    order, _ = await bought(world, host)
    host.refund_outcome = "PROCESSING"
    refund, _ = await refund_asked(world, host, order)

    world.clock.advance(LATER)

    async def asked_once() -> bool:
        check = await check_row(world)
        return check.attempts == 1 and check.status == "pending" and check.last_error is not None

    await world.eventually(asked_once)
    assert "still in progress" in ((await check_row(world)).last_error or "")
    assert await refund_rows(world) == []
    assert (await world.rows(Membership))[0].status == "active"

    host.lose_next(1)
    host.finish_refund(refund.out_refund_no, "SUCCESS")
    world.clock.advance(timedelta(minutes=11))  # past the outbox's longest backoff
    await world.wait_text(OWNER, f"Refund: 9.90 CNY of order {order.order_no}")
    check = await check_ends(world)
    assert check.attempts == 2
    (back,) = await refund_rows(world)
    assert (back.amount_minor, back.provider_payment_id) == (990, refund.refund_id)
    await world.wait_status(GROUP, BUYER, "left")


async def test_a_refund_processing_for_too_long_is_given_up_audited_and_told(wx):
    world, host = wx
    order, _ = await bought(world, host)
    host.refund_outcome = "PROCESSING"
    await refund_asked(world, host, order)

    world.clock.advance(REFUND_CHECK_FOR + timedelta(minutes=1))
    check = await check_ends(world, "failed")
    assert "still in progress" in (check.last_error or "")
    assert "stopped asking after 7 days" in (check.last_error or "")
    (note,) = await world.rows(AuditLog, col(AuditLog.action) == "payment.refund_unconfirmed")
    assert note.target == f"order:{order.order_no}"
    # The money may still move: the charge stays requested, the buyer keeps access.
    (charge,) = await world.rows(Payment)
    assert charge.refund_requested_at is not None
    assert await refund_rows(world) == []
    # The owner who asked hears that it is theirs to check now, once.
    told = await world.wait_text(OWNER, "has not confirmed it in 7 days")
    assert order.order_no in (told.text or "") and "9.90 CNY" in (told.text or "")


async def test_a_lost_refund_of_unexpected_money_is_settled_by_the_check(wx):
    world, host = wx
    wrong = WrongAmount(world.service.providers["wechatpay"])
    order = (await open_order(world, wrong)).order
    host.pay(order.order_no)
    flagged = await world.wait_text(OWNER, "0.01 CNY")
    host.lose_next(1)
    await world.press(OWNER, flagged, "xrf:", match=has("requested"))

    async def queued() -> bool:
        return await world.count(Outbox, col(Outbox.kind) == "refund_check") == 1

    await world.eventually(queued)
    await settled_at_wechat(world, host, "SUCCESS")
    assert await refund_rows(world) == []

    world.clock.advance(LATER)
    await world.wait_text(OWNER, "Refunded: the extra 0.01 CNY")
    await check_ends(world)
    (refund,) = host.refunds
    (back,) = await refund_rows(world)
    assert (back.amount_minor, back.extra, back.provider_payment_id) == (1, True, refund.refund_id)
    await status_is(world, order.order_no, "failed")
