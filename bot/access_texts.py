"""A buyer's access and orders as lines of text, platform-neutral: Telegram's /my and /orders
(bot/handlers/my_access.py) and WeChat's 我的 and 订单 (bot/wechat/buyer.py) say the same."""

from __future__ import annotations

from datetime import datetime

from bot.i18n import has, t
from membership.grants import is_active
from membership.removal import ENDED
from membership.reports import Access, OrderLine
from storage.models import Membership
from storage.money import Money


def renews(m: Membership) -> bool:
    return m.auto_renew and m.provider_subscription_id is not None and m.status not in ENDED


def renewable(a: Access) -> bool:
    """Whether the buyer may buy this access again: its group is on sale, the access renews
    by hand, and is not for life."""
    m = a.membership
    return a.group.active and not renews(m) and (m.expires_at is not None or m.status in ENDED)


def access_line(a: Access, now: datetime, lang: str) -> str:
    m, group = a.membership, a.group.title
    if m.status in ENDED:
        return t(f"my_{m.status}", lang, group=group, date=f"{m.updated_at:%Y-%m-%d}")
    if m.status == "pending_approval":
        return t("my_pending", lang, group=group)
    if m.expires_at is None:
        return t("my_lifetime", lang, group=group)
    if not is_active(m, now):
        return t("my_lapsing", lang, group=group, until=m.expires_at)
    return t(
        "my_active_renews" if renews(m) else "my_active", lang, group=group, until=m.expires_at
    )


def wallet_parts(
    wallet_minor: int, points_used: int, points_minor: int, currency: str, lang: str
) -> list[str]:
    """What the wallet pays: ["5.00 CNY balance", "200 points (2.00 CNY)"], the empty ones
    left out."""
    parts = []
    if wallet_minor:
        parts.append(t("paid_part_balance", lang, amount=str(Money(wallet_minor, currency))))
    if points_used:
        parts.append(
            t(
                "paid_part_points",
                lang,
                points=points_used,
                amount=str(Money(points_minor, currency)),
            )
        )
    return parts


def paid_with(o: OrderLine, lang: str) -> str:
    """How an order was paid: its provider, or "5.00 CNY balance + 200 points (2.00 CNY) +
    2.90 CNY stripe" when the wallet paid a part."""
    if not (o.wallet_minor or o.points_used):
        return o.provider
    parts = wallet_parts(o.wallet_minor, o.points_used, o.points_minor, o.price.currency, lang)
    if o.provider_part.amount_minor:
        parts.append(f"{o.provider_part} {o.provider}")
    return " + ".join(parts)


def _bought(o: OrderLine, lang: str) -> str:
    """What the order bought: the plan's title (shortened), or the top-up it was."""
    if o.kind == "topup":
        if o.bonus is None or o.bonus.amount_minor <= 0:
            return t("topup_title", lang, amount=str(o.price))
        return t("topup_title_bonus", lang, amount=str(o.price), bonus=str(o.bonus))
    return o.plan if len(o.plan) <= 40 else o.plan[:39] + "…"


def orders_lines(shown: list[OrderLine], total: int, lang: str) -> list[str]:
    """The header and one line per order (newest first); `shown` is not empty."""
    header = (
        t("orders_header", lang)
        if total <= len(shown)
        else t("orders_header_capped", lang, shown=len(shown), total=total)
    )
    return [header] + [
        t(
            "orders_line",
            lang,
            order_no=o.order_no,
            date=f"{o.created_at:%Y-%m-%d}",
            plan=_bought(o, lang),
            price=str(o.price),
            provider=paid_with(o, lang),
            status=t(f"order_status_{o.status}", lang)
            if has(f"order_status_{o.status}")
            else o.status,
        )
        for o in shown
    ]
