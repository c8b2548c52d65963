"""Paying a plan from the wallet: the "Wallet" / "Wallet + <method>" buttons, and the PIN
asked first when the buyer set one (/pin). The message carrying the PIN is deleted at once,
whatever it held, so it does not stay in the chat history."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from aiogram import F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InaccessibleMessage, Message
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.errors import PaymentError
from billing.wallet_checkout import WALLET_PROVIDER, open_wallet_checkout
from billing.wallet_pin import PinCheck, check_pin
from bot.context import BotContext
from bot.handlers.callbacks import WalletPayCb
from bot.handlers.checkout import show_checkout
from bot.i18n import t
from bot.replies import Replies
from membership.catalog import get_plan
from membership.errors import RuleError
from storage.models import User, WalletPin, stored_id
from storage.money import Money

log = logging.getLogger(__name__)


class PinEntry(StatesGroup):
    # data: the wallet choice (WalletPayCb's fields) and asked_at (epoch seconds)
    waiting = State()


# How long a PIN request stands: a PIN sent later must not pay for a choice the buyer walked
# away from (nor should every later message be taken for a PIN).
PIN_WAIT = timedelta(minutes=10)


def router() -> Router:
    r = Router(name="wallet_pay")
    r.callback_query.register(wallet_pay, WalletPayCb.filter())
    # Commands still reach their handlers while a PIN is awaited.
    r.message.register(pin_entered, StateFilter(PinEntry.waiting), F.text, ~F.text.startswith("/"))
    # A PIN sent when none was asked for (the request ran out, or the bot restarted without
    # Redis and forgot it) is deleted all the same.
    r.message.register(
        stray_pin, StateFilter(None), F.chat.type == "private", F.text.regexp(r"^\s*\d{4,6}\s*$")
    )
    return r


def locked_text(until: datetime | None, lang: str) -> str:
    return t("pin_locked", lang, time=until.strftime("%H:%M UTC") if until else "")


async def _pin_of(session: AsyncSession, user_id: int) -> WalletPin | None:
    return (
        await session.execute(select(WalletPin).where(col(WalletPin.user_id) == user_id))
    ).scalar_one_or_none()


async def has_pin(session: AsyncSession, user_id: int) -> bool:
    return await _pin_of(session, user_id) is not None


async def wallet_pay(
    query: CallbackQuery,
    out: Replies,
    callback_data: WalletPayCb,
    ctx: BotContext,
    session: AsyncSession,
    state: FSMContext,
    user: User | None,
    lang: str,
) -> None:
    out.add(query.answer())
    if query.message is None or user is None:
        return
    if ctx.wallet_rules is None:
        out.add(query.message.answer(t("wallet_off", lang)))
        return
    pin = await _pin_of(session, stored_id(user))
    if pin is None:
        await _pay(query.message, out, callback_data, ctx, session, user, lang)
        return
    now = ctx.clock.now()
    if pin.locked_until is not None and pin.locked_until > now:
        out.add(query.message.answer(locked_text(pin.locked_until, lang)))
        return
    await state.set_state(PinEntry.waiting)
    await state.set_data({**callback_data.model_dump(), "asked_at": now.timestamp()})
    out.add(query.message.answer(t("pin_ask", lang)))


async def pin_entered(
    message: Message,
    out: Replies,
    ctx: BotContext,
    session: AsyncSession,
    state: FSMContext,
    user: User | None,
    lang: str,
) -> None:
    out.add(message.delete())
    pin = (message.text or "").strip()
    if user is None or ctx.wallet_rules is None:
        await state.clear()
        if user is not None:
            out.add(message.answer(t("wallet_off", lang)))
        return
    now = ctx.clock.now()
    data = await state.get_data()
    asked_at = data.pop("asked_at", None)
    if (
        not isinstance(asked_at, int | float)
        or now.timestamp() - asked_at > PIN_WAIT.total_seconds()
    ):
        await state.clear()
        out.add(message.answer(t("pin_wait_expired", lang)))
        return
    if not (pin.isdigit() and 4 <= len(pin) <= 6):
        out.add(message.answer(t("pin_format", lang)))
        return
    checked = await check_pin(session, stored_id(user), pin, ctx.wallet_rules, now)
    if checked.status == PinCheck.WRONG:
        out.add(message.answer(t("pin_wrong", lang, tries=checked.tries_left)))
        return
    await state.clear()
    if checked.status == PinCheck.LOCKED:
        out.add(message.answer(locked_text(checked.locked_until, lang)))
        return
    # OK, or NOT_SET (cleared meanwhile by /pin off): nothing left to guard.
    await session.commit()  # the reset try count stands even if the checkout fails
    await _pay(message, out, WalletPayCb(**data), ctx, session, user, lang)


async def stray_pin(
    message: Message, out: Replies, session: AsyncSession, user: User | None, lang: str
) -> None:
    if user is None or not await has_pin(session, stored_id(user)):
        raise SkipHandler  # four digits from someone without a PIN: not ours
    out.add(message.delete())
    out.add(message.answer(t("pin_wait_expired", lang)))


async def _pay(
    chat: Message | InaccessibleMessage,
    out: Replies,
    choice: WalletPayCb,
    ctx: BotContext,
    session: AsyncSession,
    user: User,
    lang: str,
) -> None:
    assert ctx.wallet_rules is not None
    v = await get_plan(session, choice.plan_id)
    price = next((p for p in v.prices if p.currency == choice.currency), None) if v else None
    provider = None if choice.provider == WALLET_PROVIDER else ctx.providers.get(choice.provider)
    if (
        v is None
        or price is None
        or v.plan.recurring
        or (choice.provider != WALLET_PROVIDER and provider is None)
    ):
        out.add(chat.answer(t("plan_gone", lang)))
        return
    try:
        started = await open_wallet_checkout(
            session,
            user,
            v.plan,
            price,
            provider,
            use_balance=True,
            use_points=True,
            rules=ctx.wallet_rules,
            now=ctx.clock.now(),
            public_url=ctx.public_url,
            timeout=ctx.order_timeout,
            chosen_at=datetime.fromtimestamp(choice.at / 1000, UTC),
        )
    except RuleError as e:
        out.add(chat.answer(t(e.key, lang, **e.params)))
        return
    except PaymentError as e:
        log.warning("wallet checkout failed for plan %s via %s: %s", v.plan.id, choice.provider, e)
        out.add(chat.answer(t("checkout_failed", lang)))
        return
    order = started.order
    if order.status == "paid":
        # The wallet covered it: the receipt (wallet_paid) and the invite were queued with
        # the payment, in its transaction; they go out now.
        ctx.wake_outbox()
        return
    assert provider is not None
    out.add(show_checkout(chat, started, v.plan.title, provider, ctx, lang))
    out.add(
        chat.answer(
            t(
                "wallet_held",
                lang,
                order_no=order.order_no,
                amount=str(Money(order.wallet_minor + order.points_minor, order.currency)),
            )
        )
    )
