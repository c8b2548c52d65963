"""The wallet in words, for both chats (Telegram's /wallet, WeChat's 钱包): a top-up
product's name, and the summary of balances, points, held amounts and the latest entries."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billing.topup import StatementLine, statement
from billing.wallet import POINTS, balances
from bot.i18n import has, t
from storage.models import TopupProduct
from storage.money import Money

ENTRIES_SHOWN = 10


def product_text(p: TopupProduct, lang: str) -> str:
    """ "Top-up 100.00 CNY (+10.00 CNY bonus)" in the reader's language."""
    pay = Money(p.amount_minor, p.currency)
    if p.bonus_minor <= 0:
        return t("topup_title", lang, amount=str(pay))
    bonus = str(Money(p.bonus_minor, p.currency))
    return t("topup_title_bonus", lang, amount=str(pay), bonus=bonus)


def _entry_text(e: StatementLine, lang: str) -> str:
    amount = (
        f"{e.amount:+d} {t('wallet_points_unit', lang)}"
        if e.kind == POINTS
        else ("+" if e.amount > 0 else "") + str(Money(e.amount, e.currency))
    )
    key = f"wallet_reason_{e.reason}"
    reason = t(key, lang) if has(key) else e.reason
    return t("wallet_entry", lang, date=f"{e.at:%Y-%m-%d}", amount=amount, reason=reason)


async def wallet_summary(session: AsyncSession, user_id: int, lang: str) -> list[str]:
    """The header, one line per balance (with what is held) and points, then the latest
    entries: what a buyer sees of their wallet."""
    lines = [t("wallet_header", lang)]
    held_any = False
    for h in await balances(session, user_id):
        if h.kind == POINTS:
            lines.append(t("wallet_points", lang, points=h.amount))
            continue
        line = t("wallet_balance", lang, amount=str(Money(h.amount, h.currency)))
        if h.held:
            held_any = True
            line += " " + t("wallet_held_line", lang, held=str(Money(h.held, h.currency)))
        lines.append(line)
    if len(lines) == 1:
        lines.append(t("wallet_empty", lang))
    if held_any:
        lines.append(t("wallet_held_note", lang))
    entries = await statement(session, user_id, ENTRIES_SHOWN)
    if entries:
        lines += ["", t("wallet_entries_header", lang)]
        lines += [_entry_text(e, lang) for e in entries]
    return lines
