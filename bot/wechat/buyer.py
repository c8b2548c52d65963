"""What a buyer says to the bot on WeChat: 菜单/menu → numbered rooms → plans → payment
methods → the payment QR code (or pay link); 我的/my, 订单/orders, 续费/renew, 帮助/help.

WeChat has no buttons: every list is numbered, stored (bot/wechat/menu.py), and a reply of
a number picks from the last list shown. The rules are the Telegram bot's (catalog,
billing.checkout.open_checkout); only the conversation is WeChat's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from billing.check_now import minutes_left
from billing.checkout import open_checkout
from billing.errors import PaymentError
from billing.provider import PaymentProvider, QrPaymentProvider, offers
from billing.qr_image import qr_png
from billing.stars import CURRENCY as STARS
from bot.access_texts import access_line, orders_lines, renewable
from bot.i18n import duration_text, has, t
from bot.wechat.events import Outgoing
from bot.wechat.menu import Menu, clear_menu, load_menu, save_menu
from membership.catalog import PlanView, get_group, get_plan, groups_for_sale, plans_for_group
from membership.reports import user_accesses, user_orders
from storage.models import ChatGroup, Order, User, stored_id
from storage.money import Money

if TYPE_CHECKING:
    from bot.wechat.conversation import WechatEnv

log = logging.getLogger(__name__)

ORDERS_SHOWN = 20
# The QR apps first (what a WeChat user pays with), then any provider with a pay link.
METHOD_ORDER = ("wechatpay", "alipay")


def _numbered(header: str, labels: list[str]) -> str:
    return "\n".join([header] + [f"{i}. {label}" for i, label in enumerate(labels, 1)])


def _say(to: str, text: str) -> list[Outgoing]:
    return [Outgoing(to=to, text=text)]


async def show_rooms(
    session: AsyncSession, env: WechatEnv, user: User, to: str, lang: str
) -> list[Outgoing]:
    """菜单: the WeChat rooms on sale, numbered."""
    rooms = await groups_for_sale(session, "wechat")
    if not rooms:
        await clear_menu(session, stored_id(user))
        return _say(to, t("wechat_no_rooms", lang))
    await _save(session, env, user, Menu("rooms", [g.id for g in rooms]))
    return _say(to, _numbered(t("wechat_rooms", lang), [g.title for g in rooms]))


async def show_renewals(
    session: AsyncSession, env: WechatEnv, user: User, to: str, lang: str
) -> list[Outgoing]:
    """续费: the rooms of the buyer's own access that can be bought again, numbered; a pick
    goes on as from 菜单 (the plans, then how to pay)."""
    accesses = await user_accesses(session, stored_id(user))
    rooms: list[ChatGroup] = []
    for a in accesses:
        if a.group.platform == "wechat" and renewable(a) and a.group not in rooms:
            rooms.append(a.group)
    if not rooms:
        return _say(to, t("wechat_renew_none", lang))
    await _save(session, env, user, Menu("rooms", [g.id for g in rooms]))
    return _say(to, _numbered(t("wechat_renew_pick", lang), [g.title for g in rooms]))


async def _save(session: AsyncSession, env: WechatEnv, user: User, menu: Menu) -> None:
    await save_menu(session, stored_id(user), menu, env.clock.now())


def methods(providers: dict[str, PaymentProvider], v: PlanView) -> list[tuple[str, Money]]:
    """How this plan can be paid on WeChat: every provider and price it offers, except
    Telegram Stars (paid inside Telegram only), the QR apps first."""
    names = sorted(
        providers, key=lambda n: METHOD_ORDER.index(n) if n in METHOD_ORDER else len(METHOD_ORDER)
    )
    return [
        (name, price)
        for name in names
        for price in v.prices
        if price.currency != STARS
        and offers(providers[name], price.currency, recurring=v.plan.recurring)
    ]


def _plan_label(v: PlanView, lang: str) -> str:
    prices = " / ".join(str(p) for p in v.prices if p.currency != STARS)
    return f"{v.plan.title} · {duration_text(v.plan.duration_days, lang)} · {prices}"


async def show_plans(
    session: AsyncSession, env: WechatEnv, user: User, to: str, group_id: int, lang: str
) -> list[Outgoing]:
    group = await get_group(session, group_id)
    if group is None:
        await clear_menu(session, stored_id(user))
        return _say(to, t("wechat_group_gone", lang))
    providers = dict(env.providers)
    views = [v for v in await plans_for_group(session, group_id) if methods(providers, v)]
    if not views:
        await clear_menu(session, stored_id(user))
        return _say(to, t("no_plans", lang, group=group.title))
    await _save(session, env, user, Menu("plans", [v.plan.id for v in views], group_id))
    return _say(
        to,
        _numbered(
            t("wechat_pick_plan", lang, group=group.title), [_plan_label(v, lang) for v in views]
        ),
    )


def _method_label(name: str, price: Money, lang: str) -> str:
    key = f"method_{name}"
    return t(key, lang, price=str(price)) if has(key) else f"{name} · {price}"


async def show_methods(
    session: AsyncSession, env: WechatEnv, user: User, to: str, plan_id: int, lang: str
) -> list[Outgoing]:
    v = await get_plan(session, plan_id)
    if v is None:
        await clear_menu(session, stored_id(user))
        return _say(to, t("wechat_plan_gone", lang))
    ways = methods(dict(env.providers), v)
    if not ways:
        await clear_menu(session, stored_id(user))
        return _say(to, t("no_methods", lang))
    await _save(session, env, user, Menu("methods", [[n, p.currency] for n, p in ways], plan_id))
    header = t(
        "wechat_pick_method",
        lang,
        plan=v.plan.title,
        duration=duration_text(v.plan.duration_days, lang),
    )
    return _say(to, _numbered(header, [_method_label(n, p, lang) for n, p in ways]))


async def pick(
    session: AsyncSession, env: WechatEnv, user: User, to: str, number: int, lang: str
) -> list[Outgoing]:
    """A reply of a number: the item of the last list shown."""
    menu = await load_menu(session, stored_id(user))
    if menu is None or not menu.items:
        return _say(to, t("wechat_pick_none", lang))
    item = menu.pick(number)
    if item is None:
        return _say(to, t("wechat_pick_range", lang, count=len(menu.items)))
    if menu.kind == "rooms":
        return await show_plans(session, env, user, to, int(item), lang)
    if menu.kind == "plans":
        return await show_methods(session, env, user, to, int(item), lang)
    name, currency = str(item[0]), str(item[1])
    return await checkout(session, env, user, to, menu.of, name, currency, lang)


async def checkout(
    session: AsyncSession,
    env: WechatEnv,
    user: User,
    to: str,
    plan_id: int,
    provider_name: str,
    currency: str,
    lang: str,
) -> list[Outgoing]:
    """Start the order (billing.checkout.open_checkout, which commits) and show how to pay:
    the QR code as an image with a text (amount, order, minutes left, pay page), or the
    provider's pay link."""
    v = await get_plan(session, plan_id)
    provider = env.providers.get(provider_name)
    price = next((p for p in v.prices if p.currency == currency), None) if v else None
    if v is None or provider is None or price is None or not provider.accepts(currency):
        await clear_menu(session, stored_id(user))
        return _say(to, t("wechat_plan_gone", lang))
    # The list is spent: a second "1" must not open a second order unasked.
    await clear_menu(session, stored_id(user))
    now = env.clock.now()
    try:
        started = await open_checkout(
            session,
            provider,
            user,
            v.plan,
            price,
            now,
            public_url=env.public_url,
            timeout=env.order_timeout,
        )
    except PaymentError as e:
        log.warning("checkout failed for plan %s via %s: %s", plan_id, provider.name, e)
        return _say(to, t("checkout_failed", lang))
    order = started.order
    if started.shown == "qr":
        return _qr_reply(env, to, order, v.plan.title, provider, lang)
    return _say(
        to,
        t(
            "wechat_checkout_link",
            lang,
            order_no=order.order_no,
            plan=v.plan.title,
            price=str(Money(order.amount_minor, order.currency)),
            link=order.checkout_url or pay_page(env, order),
        ),
    )


def pay_page(env: WechatEnv, order: Order) -> str:
    return f"{env.public_url}/pay/{order.order_no}"


def scan_app_name(provider: PaymentProvider, lang: str) -> str:
    """ "WeChat" / "Alipay" in the buyer's language: the app that scans this provider's QR."""
    app = provider.scan_app if isinstance(provider, QrPaymentProvider) else ""
    return t(f"scan_app_{app}", lang) if has(f"scan_app_{app}") else (app or provider.name)


def _qr_reply(
    env: WechatEnv,
    to: str,
    order: Order,
    plan: str,
    provider: PaymentProvider,
    lang: str,
    *,
    topup: bool = False,
) -> list[Outgoing]:
    # A top-up's texts promise the wallet, not the room.
    sfx = "_topup" if topup else ""
    price = str(Money(order.amount_minor, order.currency))
    app = scan_app_name(provider, lang)
    link = pay_page(env, order)
    try:
        png = qr_png(order.checkout_url or "")
    except ValueError as e:
        # Never for a real provider; the pay page still shows the code, so say where.
        log.error("order %s: QR payload cannot be drawn (%s); sending the link", order.order_no, e)
        return _say(
            to,
            t(
                f"wechat_qr_link_only{sfx}",
                lang,
                order_no=order.order_no,
                plan=plan,
                price=price,
                app=app,
                link=link,
            ),
        )
    text = t(
        f"wechat_qr_text{sfx}",
        lang,
        order_no=order.order_no,
        plan=plan,
        price=price,
        app=app,
        minutes=minutes_left(order.expires_at, env.clock.now()),
        link=link,
    )
    return [
        Outgoing(to=to, image_png=png, image_name=f"{order.order_no}.png"),
        Outgoing(to=to, text=text),
    ]


async def my_access(
    session: AsyncSession, env: WechatEnv, user: User, to: str, lang: str
) -> list[Outgoing]:
    """我的: the buyer's access, as Telegram's /my lists it; how to renew, in words."""
    accesses = await user_accesses(session, stored_id(user))
    if not accesses:
        return _say(to, t("wechat_my_none", lang))
    now = env.clock.now()
    lines = [t("my_header", lang)] + [access_line(a, now, lang) for a in accesses]
    if any(a.group.platform == "wechat" and renewable(a) for a in accesses):
        lines.append(t("wechat_my_renew_hint", lang))
    return _say(to, "\n".join(lines))


async def my_orders(session: AsyncSession, user: User, to: str, lang: str) -> list[Outgoing]:
    """订单: the buyer's latest orders."""
    shown, total = await user_orders(session, stored_id(user), limit=ORDERS_SHOWN)
    if not shown:
        return _say(to, t("wechat_orders_none", lang))
    return _say(to, "\n".join(orders_lines(shown, total, lang)))
