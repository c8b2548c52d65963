"""The payment-method button: create the order and show the provider's checkout; the
"I have paid" button under a QR code."""

from __future__ import annotations

import logging
from datetime import datetime

from aiogram import Router
from aiogram.methods import SendMessage, SendPhoto
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InaccessibleMessage,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from sqlalchemy.ext.asyncio import AsyncSession

from billing.check_now import Check, PaidCheck, check_now, minutes_left
from billing.checkout import StartedCheckout, open_checkout
from billing.errors import PaymentError
from billing.provider import PaymentProvider, QrPaymentProvider
from billing.qr_image import qr_png
from bot.context import BotContext
from bot.handlers.callbacks import PaidCheckCb, PayCb
from bot.i18n import has, t
from bot.replies import Replies
from membership.catalog import get_plan
from storage.models import Order, User, stored_id
from storage.money import Money

log = logging.getLogger(__name__)


def router() -> Router:
    r = Router(name="checkout")
    r.callback_query.register(pay, PayCb.filter())
    r.callback_query.register(paid_check, PaidCheckCb.filter())
    return r


async def pay(
    query: CallbackQuery,
    out: Replies,
    callback_data: PayCb,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    out.add(query.answer())
    if query.message is None or user is None:
        return
    v = await get_plan(session, callback_data.plan_id)
    provider = ctx.providers.get(callback_data.provider)
    price = next((p for p in v.prices if p.currency == callback_data.currency), None) if v else None
    if v is None or provider is None or price is None or not provider.accepts(price.currency):
        out.add(query.message.answer(t("plan_gone", lang)))
        return
    try:
        started = await open_checkout(
            session,
            provider,
            user,
            v.plan,
            price,
            ctx.clock.now(),
            public_url=ctx.public_url,
            timeout=ctx.order_timeout,
        )
    except PaymentError as e:
        log.warning("checkout failed for plan %s via %s: %s", v.plan.id, provider.name, e)
        out.add(query.message.answer(t("checkout_failed", lang)))
        return
    out.add(show_checkout(query.message, started, v.plan.title, provider, ctx, lang))


def show_checkout(
    chat: Message | InaccessibleMessage,
    started: StartedCheckout,
    plan: str,
    provider: PaymentProvider,
    ctx: BotContext,
    lang: str,
) -> SendMessage | SendPhoto:
    """The opened checkout as the buyer sees it: a QR photo, "the invoice is in the chat"
    (Stars), or the pay button; the price is what the provider charges."""
    order = started.order
    shown = Money(order.amount_minor, order.currency)
    if started.shown == "qr":
        return _qr_reply(chat, order, plan, provider, ctx, lang)
    if started.shown == "invoice_sent" or order.checkout_url is None:
        # The invoice is in the chat already (Telegram Stars): its own Pay button pays.
        return chat.answer(t("stars_invoice_sent", lang, order_no=order.order_no, plan=plan))
    kb = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("btn_pay", lang, price=str(shown)), url=order.checkout_url
                )
            ]
        ]
    )
    return chat.answer(
        t("checkout_ready", lang, order_no=order.order_no, plan=plan, price=str(shown)),
        reply_markup=kb,
    )


def scan_app_name(provider: PaymentProvider | None, lang: str) -> str:
    """ "WeChat" / "Alipay" in the buyer's language: the app that scans this provider's QR."""
    app = provider.scan_app if isinstance(provider, QrPaymentProvider) else ""
    if has(f"scan_app_{app}"):
        return t(f"scan_app_{app}", lang)
    return app or (provider.name if provider is not None else "")


def _qr_reply(
    chat: Message | InaccessibleMessage,
    order: Order,
    plan: str,
    provider: PaymentProvider,
    ctx: BotContext,
    lang: str,
    *,
    topup: bool = False,
) -> SendPhoto | SendMessage:
    """The QR code as a photo, with what the buyer needs to know and two buttons: the pay
    page (the same code, for paying on this very phone) and "I have paid". The QR payload
    itself (`weixin://...`) is never a button: Telegram takes only http(s)/tg URLs.

    The photo's bytes are staged in the outbox with the reply (bot/calls.py), so a photo
    that meets a 429 or 5xx is re-sent as itself; a payload that cannot be drawn (never for
    a real provider) still gets the pay page link as text, never silence."""
    price = str(Money(order.amount_minor, order.currency))
    app = scan_app_name(provider, lang)
    # A top-up's texts promise the wallet, not an invite.
    sfx = "_topup" if topup else ""
    kb = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("btn_open_pay_page", lang), url=f"{ctx.public_url}/pay/{order.order_no}"
                )
            ],
            [
                InlineKeyboardButton(
                    text=t("btn_paid_check", lang),
                    callback_data=PaidCheckCb(order_no=order.order_no).pack(),
                )
            ],
        ]
    )
    try:
        png = qr_png(order.checkout_url or "")
    except ValueError as e:
        log.error("order %s: QR payload cannot be drawn (%s); sending the link", order.order_no, e)
        return chat.answer(
            t(f"qr_link_only{sfx}", lang, order_no=order.order_no, plan=plan, price=price, app=app),
            reply_markup=kb,
        )
    minutes = minutes_left(order.expires_at, ctx.clock.now())
    caption = t(
        f"qr_caption{sfx}",
        lang,
        order_no=order.order_no,
        plan=plan,
        price=price,
        app=app,
        minutes=minutes,
    )
    return chat.answer_photo(
        BufferedInputFile(png, filename=f"{order.order_no}.png"), caption=caption, reply_markup=kb
    )


async def paid_check(
    query: CallbackQuery,
    out: Replies,
    callback_data: PaidCheckCb,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    """ "I have paid": asks the provider now and grants if paid (billing/check_now.py);
    the invite follows through the outbox, as after a webhook."""
    if query.message is None or user is None:
        out.add(query.answer())
        return
    checked = await check_now(
        session, ctx.providers, callback_data.order_no, stored_id(user), ctx.clock.now()
    )
    out.add(query.answer())
    out.add(query.message.answer(paid_check_text(checked, ctx.clock.now(), lang)))


def paid_check_text(checked: PaidCheck, now: datetime, lang: str) -> str:
    no = checked.order_no
    # A top-up credits the wallet: no invite follows.
    topup = "_topup" if checked.topup else ""
    match checked.result:
        case Check.PAID_NOW:
            return t(f"paid_check_received{topup}", lang, order_no=no)
        case Check.ALREADY_PAID:
            return t(f"paid_check_already{topup}", lang, order_no=no)
        case Check.STILL_OPEN:
            return t("paid_check_open", lang, order_no=no, minutes=checked.minutes_left(now))
        case Check.EXPIRED:
            return t("paid_check_expired", lang, order_no=no)
        case Check.CLOSED:
            return t("paid_check_closed", lang, order_no=no)
        case Check.REVIEW:
            return t("paid_check_review", lang, order_no=no)
        case Check.NOT_YOURS:
            return t("paid_check_not_yours", lang)
        case Check.UNKNOWN:
            return t("paid_check_unknown", lang)
        case Check.PROVIDER_ERROR:
            return t("paid_check_error", lang)
        case Check.TOO_SOON:
            return t("paid_check_too_soon", lang, order_no=no)
