"""Rendering catalog texts in the user's language, through aiogram's i18n (gettext catalogs).

The texts and their keys are in bot/messages.py; the translations in bot/locales/<lang>/
LC_MESSAGES/messages.po, compiled to .mo by `make compile-messages` (the Makefile runs it
before `make test` and `make demo`). The user's Telegram language picks the catalog (zh* ->
Simplified Chinese, else English) until they choose with /language. A param named `until`
takes a datetime, an ISO string or None (lifetime access): None picks the `<key>_lifetime` text.
A param named `platform` takes a platform id ("wechat") and shows its `platform_<id>` text.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from gettext import GNUTranslations
from pathlib import Path
from typing import Any

from aiogram.utils.i18n import I18n

from bot.messages import CATALOG

LANGUAGES = ("en", "zh")
LOCALES = Path(__file__).resolve().parent / "locales"
DOMAIN = "messages"
LIFETIME = "_lifetime"


class CatalogMissing(RuntimeError):
    """The compiled catalogs are absent: the service cannot speak to anyone."""


@cache
def catalogs() -> dict[str, GNUTranslations]:
    """The compiled catalog per language, loaded once through aiogram's I18n. A language
    whose .mo is missing or older than its .po (an install without `make`, a .po edited
    since) is compiled from the .po in memory with Babel instead, so the bot never speaks
    a stale text or fails at its first message."""
    try:
        found: dict[str, GNUTranslations] = dict(
            I18n(path=LOCALES, default_locale="en", domain=DOMAIN).locales
        )
    except (RuntimeError, OSError):
        found = {}
    for lang in LANGUAGES:
        po = LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
        mo = po.with_suffix(".mo")
        if lang not in found or (
            po.exists() and (not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime)
        ):
            if not po.exists():
                raise CatalogMissing(f"no message catalog for {lang}: {po} is missing")
            found[lang] = _compile_in_memory(po)
    return found


def _compile_in_memory(po: Path) -> GNUTranslations:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as f:
        catalog = read_po(f)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return GNUTranslations(buf)


def pick_language(stored: str | None, telegram_code: str | None = None) -> str:
    code = (stored or telegram_code or "en").lower()
    return "zh" if code.startswith("zh") else "en"


def _fmt(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return value


def has(key: str) -> bool:
    return key in CATALOG


def t(key: str, lang: str | None, /, **params: Any) -> str:
    """The text `key` in `lang`, formatted with `params`."""
    lang = pick_language(lang)
    if "until" in params:
        until = params["until"]
        if until is None:
            if key + LIFETIME in CATALOG:
                key += LIFETIME
            else:  # a text that names no end, or (tests forbid it) one with no twin
                params["until"] = t("lifetime", lang)
        elif isinstance(until, str):
            params["until"] = datetime.fromisoformat(until)
    platform = params.get("platform")
    if isinstance(platform, str) and f"platform_{platform}" in CATALOG:
        # Stored params (outbox rows) name a platform by its id; the reader sees its name.
        params["platform"] = t(f"platform_{platform}", lang)
    text = CATALOG[key]
    tr = catalogs()[lang]
    if text.plural is not None and text.count is not None:
        n = int(params[text.count])
        raw = tr.npgettext(key, text.singular, text.plural, n)
    else:
        raw = tr.pgettext(key, text.singular)
    return raw.format(**{k: _fmt(v) for k, v in params.items()})


def duration_text(days: int | None, lang: str | None) -> str:
    """A stored duration in words: years when whole, else days (a month is stored as 30 days,
    so "1 month" would be a guess)."""
    if days is None:
        return t("lifetime", lang)
    if days % 365 == 0:
        return t("duration_years", lang, count=days // 365)
    return t("duration_days", lang, count=days)


def join(items: Iterable[str], lang: str | None) -> str:
    return ("、" if pick_language(lang) == "zh" else ", ").join(items)
