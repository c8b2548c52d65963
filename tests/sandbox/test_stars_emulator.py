"""The emulator's Telegram Stars methods, driven by a real aiogram Bot over HTTP: invoice links
and their errors, subscriptions that charge again as the clock moves, editUserStarSubscription,
subscription updates, getStarTransactions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import LabeledPrice, TransactionPartnerUser, Update

from sandbox.telegram import EmulatorClient, TelegramEmulator

TOKEN = "5151:stars-secret"
ANN, BOB = 1002, 1003
MONTH = 2592000
UPDATES = ["message", "pre_checkout_query", "subscription"]

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def emulator() -> AsyncIterator[TelegramEmulator]:
    emu = TelegramEmulator()
    await emu.start()
    yield emu
    await emu.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bot(emulator: TelegramEmulator) -> AsyncIterator[Bot]:
    b = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(emulator.base_url)))
    yield b
    await b.session.close()


@pytest_asyncio.fixture(loop_scope="module")
async def tg(emulator: TelegramEmulator, bot: Bot) -> AsyncIterator[EmulatorClient]:
    client = EmulatorClient(emulator.base_url)
    await client.reset()
    await client.create_bot(TOKEN)
    await client.create_user(ANN, "Ann")
    await client.create_user(BOB, "Bob")
    await client.send_text(ANN, "/start")
    await client.send_text(BOB, "/start")
    await drain(bot)
    yield client
    await client.close()


async def drain(bot: Bot) -> list[Update]:
    updates = await bot.get_updates(timeout=0, allowed_updates=UPDATES)
    if updates:
        await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    return updates


async def link(bot: Bot, payload: str = "GP1", amount: int = 250, **kw) -> str:
    return await bot.create_invoice_link(
        title="Club",
        description="Monthly access",
        payload=payload,
        currency="XTR",
        prices=[LabeledPrice(label="Month", amount=amount)],
        provider_token="",
        **kw,
    )


async def pay(tg: EmulatorClient, bot: Bot, user: int, url: str) -> dict:
    """The user pays; the bot side approves the pre-checkout query."""

    async def approve() -> None:
        while True:
            for u in await bot.get_updates(timeout=1, allowed_updates=UPDATES):
                await bot.get_updates(offset=u.update_id + 1, timeout=0)
                if u.pre_checkout_query:
                    await bot.answer_pre_checkout_query(u.pre_checkout_query.id, ok=True)
                    return

    task = asyncio.create_task(approve())
    result = await tg.pay_invoice_link(user, url, timeout=3)
    await asyncio.wait_for(task, 3)
    return result


async def test_create_invoice_link_checks_like_telegram(tg: EmulatorClient, bot: Bot) -> None:
    assert (await link(bot)).startswith("https://t.me/$")
    assert (await link(bot, subscription_period=MONTH)).startswith("https://t.me/$")
    for kw, error in [
        ({"subscription_period": 86400}, "SUBSCRIPTION_PERIOD_INVALID"),
        ({"subscription_period": MONTH, "amount": 10001}, "STARS_INVOICE_INVALID"),
        ({"payload": ""}, "invoice payload must be non-empty"),
    ]:
        with pytest.raises(TelegramBadRequest, match=error):
            await link(bot, **kw)
    with pytest.raises(TelegramBadRequest, match="SUBSCRIPTION_PERIOD_INVALID"):
        await bot.create_invoice_link(
            title="Club",
            description="Monthly",
            payload="GP2",
            currency="USD",
            prices=[LabeledPrice(label="Month", amount=499)],
            provider_token="tok",
            subscription_period=MONTH,
        )


async def test_a_subscription_charges_again_until_cancelled(tg: EmulatorClient, bot: Bot) -> None:
    first = await pay(tg, bot, ANN, await link(bot, subscription_period=MONTH))
    assert first["status"] == "paid" and first["is_first_recurring"] is True
    charge = first["telegram_payment_charge_id"]
    paid = [u.message.successful_payment for u in await drain(bot) if u.message]
    assert len(paid) == 1 and paid[0] is not None and paid[0].is_first_recurring

    await tg.advance_clock(MONTH + 1)
    renewals = [u.message.successful_payment for u in await drain(bot) if u.message]
    assert len(renewals) == 1 and renewals[0] is not None
    r = renewals[0]
    assert r.is_recurring and not r.is_first_recurring
    assert r.telegram_payment_charge_id != charge
    assert r.subscription_expiration_date == first["subscription_expiration_date"] + MONTH

    with pytest.raises(TelegramBadRequest, match="CHARGE_ID_INVALID"):
        await bot.edit_user_star_subscription(ANN, "stxtnope", is_canceled=True)
    with pytest.raises(TelegramBadRequest, match="USER_ID_INVALID"):
        await bot.edit_user_star_subscription(BOB, charge, is_canceled=True)
    assert await bot.edit_user_star_subscription(ANN, charge, is_canceled=True)
    with pytest.raises(TelegramBadRequest, match="SUBSCRIPTION_NOT_MODIFIED"):
        await bot.edit_user_star_subscription(ANN, charge, is_canceled=True)
    (update,) = await drain(bot)
    assert update.subscription is not None
    assert (update.subscription.state, update.subscription.invoice_payload) == ("canceled", "GP1")
    await tg.advance_clock(2 * MONTH)
    assert await drain(bot) == []
    assert len(await tg.payments()) == 2


async def test_user_actions_and_a_failed_renewal_send_subscription_updates(
    tg: EmulatorClient, bot: Bot
) -> None:
    first = await pay(tg, bot, ANN, await link(bot, subscription_period=MONTH))
    charge = first["telegram_payment_charge_id"]
    await drain(bot)
    await tg.star_subscription_action(charge, "cancel")
    await tg.star_subscription_action(charge, "renew")
    await tg.star_subscription_action(charge, "fail")
    await tg.advance_clock(MONTH + 1)
    states = [u.subscription.state for u in await drain(bot) if u.subscription]
    assert states == ["canceled", "active", "failed"]
    assert len(await tg.payments()) == 1  # the failed renewal charged nothing
    await tg.advance_clock(MONTH)
    assert await drain(bot) == []  # and it charges no more


async def test_star_transactions_newest_first_with_refunds(tg: EmulatorClient, bot: Bot) -> None:
    charges = []
    for payload in ("GPA", "GPB", "GPC"):
        charges.append(
            (await pay(tg, bot, ANN, await link(bot, payload)))["telegram_payment_charge_id"]
        )
    assert await bot.refund_star_payment(ANN, charges[0])
    page = await bot.get_star_transactions(offset=0, limit=2)
    assert [t.id for t in page.transactions] == [charges[0], charges[2]]
    refund, newest = page.transactions
    assert refund.receiver is not None and refund.source is None  # outgoing: the refund
    assert isinstance(newest.source, TransactionPartnerUser)
    assert (newest.source.invoice_payload, newest.source.transaction_type) == (
        "GPC",
        "invoice_payment",
    )
    assert newest.source.user.id == ANN and newest.amount == 250
    rest = await bot.get_star_transactions(offset=2, limit=100)
    assert [t.id for t in rest.transactions] == [charges[1], charges[0]]
    assert (await bot.get_star_transactions(offset=4)).transactions == []
    for kw in ({"limit": 0}, {"limit": 101}, {"offset": -1}):
        with pytest.raises(TelegramBadRequest):
            await bot.get_star_transactions(**kw)


async def test_a_lost_payment_update_is_still_a_transaction(tg: EmulatorClient, bot: Bot) -> None:
    url = await link(bot, "GPLOST")

    async def approve() -> None:
        while True:
            for u in await bot.get_updates(timeout=1, allowed_updates=UPDATES):
                await bot.get_updates(offset=u.update_id + 1, timeout=0)
                if u.pre_checkout_query:
                    await bot.answer_pre_checkout_query(u.pre_checkout_query.id, ok=True)
                    return

    task = asyncio.create_task(approve())
    paid = await tg.pay_invoice_link(ANN, url, timeout=3, deliver=False)
    await task
    assert await drain(bot) == []
    (t,) = (await bot.get_star_transactions()).transactions
    assert t.id == paid["telegram_payment_charge_id"]
    await tg.resend_payment(t.id)
    (u,) = await drain(bot)
    assert u.message is not None and u.message.successful_payment is not None
    assert u.message.successful_payment.telegram_payment_charge_id == t.id
