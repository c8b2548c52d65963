"""The wallet (issue 11) on Telegram: the buyer's /wallet (balances, points, the latest
entries, a button per top-up on sale), the top-up's payment methods and its checkout; the
owner's /addtopup, /topups and /deltopup in the private chat."""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from billing.errors import PaymentError
from billing.topup import (
    active_topup,
    add_topup,
    open_topup_checkout,
    parse_topup_args,
    remove_topup,
    topup_products,
    topup_providers,
)
from bot.context import BotContext
from bot.handlers.checkout import _qr_reply
from bot.i18n import has, t
from bot.replies import Replies
from bot.wallet_texts import product_text, wallet_summary
from membership.errors import RuleError
from storage.models import User, stored_id
from storage.money import Money

log = logging.getLogger(__name__)

_PRIVATE = F.chat.type == "private"


class TopupCb(CallbackData, prefix="tpu"):
    """A top-up button under /wallet: pick how to pay for it."""

    topup_id: int


class TopupPayCb(CallbackData, prefix="tpp"):
    """A payment method for a top-up: open its checkout."""

    topup_id: int
    provider: str


def router() -> Router:
    r = Router(name="wallet")
    r.message.register(wallet, Command("wallet"), _PRIVATE)
    r.message.register(addtopup, Command("addtopup"), _PRIVATE)
    r.message.register(topups, Command("topups"), _PRIVATE)
    r.message.register(deltopup, Command("deltopup"), _PRIVATE)
    r.message.register(private_only, Command("wallet", "addtopup", "topups", "deltopup"))
    r.callback_query.register(pick_method, TopupCb.filter())
    r.callback_query.register(pay, TopupPayCb.filter())
    return r


async def private_only(message: Message, out: Replies, lang: str) -> None:
    out.add(message.reply(t("private_only", lang)))


# -- the buyer -------------------------------------------------------------------------------


async def wallet(
    message: Message,
    out: Replies,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    if user is None:
        return
    if ctx.wallet_rules is None:
        out.add(message.answer(t("wallet_off", lang)))
        return
    lines = await wallet_summary(session, stored_id(user), lang)
    providers = list(ctx.providers.values())
    rows = [
        [
            InlineKeyboardButton(
                text=product_text(p, lang), callback_data=TopupCb(topup_id=p.id or 0).pack()
            )
        ]
        for p in await topup_products(session)
        if topup_providers(providers, p.currency)
    ]
    lines.append("")
    lines.append(t("wallet_topup_pick" if rows else "wallet_no_topups", lang))
    markup = InlineKeyboardMarkup(inline_keyboard=rows) if rows else None
    out.add(message.answer("\n".join(lines), reply_markup=markup))


async def pick_method(
    query: CallbackQuery,
    out: Replies,
    callback_data: TopupCb,
    ctx: BotContext,
    session: AsyncSession,
    lang: str,
) -> None:
    out.add(query.answer())
    if query.message is None:
        return
    if ctx.wallet_rules is None:
        out.add(query.message.answer(t("wallet_off", lang)))
        return
    product = await active_topup(session, callback_data.topup_id)
    ways = (
        [] if product is None else topup_providers(list(ctx.providers.values()), product.currency)
    )
    if product is None or not ways:
        out.add(query.message.answer(t("topup_gone", lang)))
        return
    price = str(Money(product.amount_minor, product.currency))
    rows = [
        [
            InlineKeyboardButton(
                text=t(f"method_{p.name}", lang, price=price)
                if has(f"method_{p.name}")
                else f"{p.name} · {price}",
                callback_data=TopupPayCb(topup_id=product.id or 0, provider=p.name).pack(),
            )
        ]
        for p in ways
    ]
    out.add(
        query.message.answer(
            t("topup_pick_method", lang, topup=product_text(product, lang)),
            reply_markup=InlineKeyboardMarkup(inline_keyboard=rows),
        )
    )


async def pay(
    query: CallbackQuery,
    out: Replies,
    callback_data: TopupPayCb,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    out.add(query.answer())
    if query.message is None or user is None:
        return
    if ctx.wallet_rules is None:
        out.add(query.message.answer(t("wallet_off", lang)))
        return
    product = await active_topup(session, callback_data.topup_id)
    provider = ctx.providers.get(callback_data.provider)
    if product is None or provider is None or not topup_providers([provider], product.currency):
        out.add(query.message.answer(t("topup_gone", lang)))
        return
    title = product_text(product, lang)
    try:
        started = await open_topup_checkout(
            session,
            provider,
            user,
            product,
            ctx.clock.now(),
            public_url=ctx.public_url,
            timeout=ctx.order_timeout,
        )
    except PaymentError as e:
        log.warning("top-up checkout failed for %s via %s: %s", product.id, provider.name, e)
        out.add(query.message.answer(t("checkout_failed", lang)))
        return
    order = started.order
    if started.shown == "qr":
        out.add(_qr_reply(query.message, order, title, provider, ctx, lang, topup=True))
        return
    if order.checkout_url is None:
        out.add(query.message.answer(t("checkout_failed", lang)))
        return
    price = str(Money(order.amount_minor, order.currency))
    kb = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=t("btn_pay", lang, price=price), url=order.checkout_url)]
        ]
    )
    out.add(
        query.message.answer(
            t("checkout_ready_topup", lang, order_no=order.order_no, plan=title, price=price),
            reply_markup=kb,
        )
    )


# -- the owner -------------------------------------------------------------------------------


def _refusal(e: RuleError, lang: str, usage: str) -> str:
    return f"{t(e.key, lang, **e.params)}\n{t(usage, lang)}"


async def addtopup(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    if user is None:
        return
    if ctx.wallet_rules is None:
        out.add(message.reply(t("wallet_off", lang)))
        return
    providers = list(ctx.providers.values())
    try:
        product = await add_topup(
            session,
            user,
            parse_topup_args(command.args),
            ctx.clock.now(),
            admin_ids=ctx.admin_ids,
            payable=lambda c: bool(topup_providers(providers, c)),
        )
    except RuleError as e:
        out.add(message.reply(_refusal(e, lang, "addtopup_usage")))
        return
    out.add(message.reply(t("topup_added", lang, n=product.id, topup=product_text(product, lang))))


async def topups(
    message: Message,
    out: Replies,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    if user is None:
        return
    mine = await topup_products(session, stored_id(user))
    if not mine:
        out.add(message.answer(t("topups_none", lang)))
        return
    lines = [t("topups_header", lang)]
    lines += [t("topups_line", lang, n=p.id, topup=product_text(p, lang)) for p in mine]
    out.add(message.answer("\n".join(lines)))


async def deltopup(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    if user is None:
        return
    arg = (command.args or "").strip().lstrip("#")
    if not arg.isdecimal() or len(arg) > 18:
        err = RuleError("missing_args") if not arg else RuleError("topup_unknown", n=arg[:20])
        out.add(message.reply(_refusal(err, lang, "deltopup_usage")))
        return
    try:
        product = await remove_topup(
            session, user, int(arg), ctx.clock.now(), admin_ids=ctx.admin_ids
        )
    except RuleError as e:
        out.add(message.reply(_refusal(e, lang, "deltopup_usage")))
        return
    out.add(
        message.reply(t("topup_removed", lang, n=product.id, topup=product_text(product, lang)))
    )
