"""钱包 / wallet on WeChat: the buyer's wallet (bot/wallet_texts.py) and the top-ups on sale,
numbered; a number picks a top-up, then a payment method, then its QR code (or pay link),
as a plan is bought here (bot/wechat/buyer.py)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from billing.errors import PaymentError
from billing.topup import active_topup, open_topup_checkout, topup_products, topup_providers
from bot.i18n import t
from bot.wallet_texts import product_text, wallet_summary
from bot.wechat.buyer import (
    METHOD_ORDER,
    _method_label,
    _numbered,
    _qr_reply,
    _save,
    _say,
    pay_page,
)
from bot.wechat.events import Outgoing
from bot.wechat.menu import Menu, clear_menu, load_menu
from storage.models import User, stored_id
from storage.money import Money

if TYPE_CHECKING:
    from bot.wechat.conversation import WechatEnv

log = logging.getLogger(__name__)


def _ways(env: WechatEnv, currency: str) -> list[str]:
    """The providers that take a top-up in `currency`: the QR apps first."""
    names = [p.name for p in topup_providers(list(env.providers.values()), currency)]
    return sorted(names, key=lambda n: n not in METHOD_ORDER)


async def show_wallet(
    session: AsyncSession, env: WechatEnv, user: User, to: str, lang: str
) -> list[Outgoing]:
    if not env.wallet_on:
        return _say(to, t("wallet_off", lang))
    lines = await wallet_summary(session, stored_id(user), lang)
    products = [p for p in await topup_products(session) if _ways(env, p.currency)]
    if not products:
        await clear_menu(session, stored_id(user))
        return _say(to, "\n".join([*lines, "", t("wallet_no_topups", lang)]))
    await _save(session, env, user, Menu("topups", [p.id for p in products]))
    listed = _numbered(t("wechat_wallet_topups", lang), [product_text(p, lang) for p in products])
    return _say(to, "\n".join([*lines, "", listed]))


async def show_topup_methods(
    session: AsyncSession, env: WechatEnv, user: User, to: str, topup_id: int, lang: str
) -> list[Outgoing]:
    product = await active_topup(session, topup_id)
    ways = [] if product is None else _ways(env, product.currency)
    if product is None or not ways:
        await clear_menu(session, stored_id(user))
        return _say(to, t("wechat_topup_gone", lang))
    await _save(session, env, user, Menu("tmethods", ways, topup_id))
    price = Money(product.amount_minor, product.currency)
    header = t("topup_pick_method", lang, topup=product_text(product, lang))
    return _say(to, _numbered(header, [_method_label(n, price, lang) for n in ways]))


async def topup_checkout(
    session: AsyncSession,
    env: WechatEnv,
    user: User,
    to: str,
    topup_id: int,
    provider_name: str,
    lang: str,
) -> list[Outgoing]:
    """Open the top-up's order (billing.topup.open_topup_checkout, which commits) and show
    how to pay it."""
    product = await active_topup(session, topup_id)
    provider = env.providers.get(provider_name)
    # The list is spent: a second "1" must not open a second order unasked.
    await clear_menu(session, stored_id(user))
    if product is None or provider is None or not topup_providers([provider], product.currency):
        return _say(to, t("wechat_topup_gone", lang))
    title = product_text(product, lang)
    try:
        started = await open_topup_checkout(
            session,
            provider,
            user,
            product,
            env.clock.now(),
            public_url=env.public_url,
            timeout=env.order_timeout,
        )
    except PaymentError as e:
        log.warning("top-up checkout failed for %s via %s: %s", topup_id, provider.name, e)
        return _say(to, t("checkout_failed", lang))
    order = started.order
    if started.shown == "qr":
        return _qr_reply(env, to, order, title, provider, lang, topup=True)
    return _say(
        to,
        t(
            "wechat_topup_checkout_link",
            lang,
            order_no=order.order_no,
            topup=title,
            link=order.checkout_url or pay_page(env, order),
        ),
    )


async def pick(
    session: AsyncSession, env: WechatEnv, user: User, to: str, number: int, lang: str
) -> list[Outgoing] | None:
    """A reply of a number to a wallet list (top-ups, or a top-up's methods); None when the
    last list shown was not one of those (bot/wechat/buyer.pick reads it then)."""
    menu = await load_menu(session, stored_id(user))
    if menu is None or menu.kind not in ("topups", "tmethods"):
        return None
    if not env.wallet_on:  # a list shown before the wallet was turned off
        await clear_menu(session, stored_id(user))
        return _say(to, t("wallet_off", lang))
    item = menu.pick(number)
    if item is None:
        return _say(to, t("wechat_pick_range", lang, count=len(menu.items)))
    if menu.kind == "topups":
        return await show_topup_methods(session, env, user, to, int(item), lang)
    return await topup_checkout(session, env, user, to, menu.of, str(item), lang)
