"""The message catalogs: every key the code uses is a text, every text is translated in both
languages with the same placeholders, the compiled catalogs match the .po files, counts take
plural forms, and access without an end never reads "until lifetime"."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.frontend import parse_keywords
from babel.messages.pofile import read_po

from bot.i18n import LANGUAGES, LIFETIME, LOCALES, catalogs, duration_text, pick_language, t
from bot.messages import CATALOG, Text, msg

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = [
    r'"key":\s*"([a-z_]+)"',
    r'notice_key\s*=\s*"([a-z_]+)"',
    r'\bt\(\s*"([a-z_]+)"',
    r'RuleError\(\s*"([a-z_]+)"',
    r'"text_key":\s*"([a-z_]+)"',
    r'text_key\s*=\s*"([a-z_]+)"',
    r'ArgError\(\s*"([a-z_]+)"',
    # MoneyError / DurationError: an English line, then the catalog key
    r'(?:Money|Duration)Error\(\s*f?"[^"]*",\s*"([a-z_]+)"',
]


def used_keys() -> set[str]:
    keys: set[str] = set()
    for package in ("bot", "membership", "billing", "scheduler", "gatepass", "storage"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text("utf-8")
            for pattern in PATTERNS:
                keys.update(re.findall(pattern, text))
    return keys


def fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def po(lang: str):
    with (LOCALES / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=lang)


def test_every_used_key_is_in_the_catalog():
    missing = sorted(k for k in used_keys() if k not in CATALOG)
    assert not missing, f"keys used in code but missing from bot/messages.py: {missing}"


def test_extraction_finds_every_text():
    """The Makefile's pybabel keywords extract each msg()/plural() as (key, English) pairs."""
    line = next(x for x in (ROOT / "Makefile").read_text().splitlines() if x.startswith("KEYWORDS"))
    keywords = parse_keywords(re.findall(r"-k\s+(\S+)", line))
    found = {
        context: text
        for _, text, _, context in extract_from_file(
            "python", ROOT / "bot" / "messages.py", keywords=keywords
        )
    }
    assert set(found) == set(CATALOG)
    for key, m in CATALOG.items():
        assert found[key] == (m.singular if m.plural is None else (m.singular, m.plural)), key


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_catalog_translates_every_text_with_the_same_placeholders(lang):
    cat = po(lang)
    entries = {m.context: m for m in cat if m.id}
    stale = sorted(set(entries) - set(CATALOG))
    assert not stale, f"{lang}: entries for keys no longer in bot/messages.py: {stale}"
    problems = []
    for key, text in CATALOG.items():
        m = entries.get(key)
        want = text.singular if text.plural is None else (text.singular, text.plural)
        if m is None or m.id != want:
            problems.append(f"{key}: not in the catalog as in bot/messages.py (make messages)")
            continue
        forms = list(m.string) if isinstance(m.string, tuple) else [m.string]
        if text.plural is not None and len(forms) != cat.num_plurals:
            problems.append(f"{key}: {len(forms)} plural forms, the language has {cat.num_plurals}")
        if not all(f.strip() for f in forms):
            problems.append(f"{key}: no translation")
        if "fuzzy" in m.flags:
            problems.append(f"{key}: marked fuzzy")
        expected = fields(text.singular)
        if text.plural is not None:
            assert fields(text.plural) == expected, key
        for f in forms:
            if fields(f) != expected:
                problems.append(f"{key}: placeholders {sorted(fields(f))} != {sorted(expected)}")
    assert not problems, f"bot/locales/{lang}:\n" + "\n".join(problems)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_compiled_catalog_matches_the_po(lang):
    """A stale .mo would speak yesterday's texts: `make compile-messages` rebuilds it."""
    compiled = catalogs()[lang]
    for m in po(lang):
        if not m.id:
            continue
        if isinstance(m.id, tuple):
            got = [compiled.npgettext(m.context, m.id[0], m.id[1], n) for n in (1, 2)]
            forms = list(m.string)
            assert got == [forms[0], forms[-1]], f"{lang} {m.context}: run make compile-messages"
        else:
            assert compiled.pgettext(m.context, m.id) == m.string, (
                f"{lang} {m.context}: run make compile-messages"
            )


def test_plural_forms():
    assert t("stats_group", "en", group_id=1, group="VIP", active=1) == "#1 VIP: 1 active member"
    assert t("stats_group", "en", group_id=1, group="VIP", active=2) == "#1 VIP: 2 active members"
    assert t("stats_group", "en", group_id=1, group="VIP", active=0).endswith("0 active members")
    assert t("stats_group", "zh", group_id=1, group="VIP", active=1) == "#1 VIP：1 名有效成员"
    assert t("stats_group", "zh", group_id=1, group="VIP", active=5) == "#1 VIP：5 名有效成员"
    assert t("count_orders", "en", count=1) == "1 order"
    assert duration_text(30, "en") == "30 days" and duration_text(1, "en") == "1 day"
    assert duration_text(730, "en") == "2 years" and duration_text(365, "zh") == "1 年"
    assert duration_text(None, "en") == "lifetime"


@pytest.mark.parametrize(
    "key", sorted(k for k, m in CATALOG.items() if "until" in fields(m.singular))
)
def test_access_without_an_end_never_reads_until_lifetime(key):
    """Every text about how long access runs has a `_lifetime` twin that says it naturally,
    except texts only ever sent about access that ends (a reminder, a lapsing line)."""
    ends = {
        "renew_reminder",
        "my_active",
        "my_active_renews",
        "my_lapsing",
        "members_line",
        "members_line_renews",
        "grant_done",
        "granted_by_owner",
    }
    if key in ends:
        return
    twin = CATALOG.get(key + LIFETIME)
    assert twin is not None, f"{key} has no {key}{LIFETIME} text"
    assert "until" not in fields(twin.singular)
    params = dict.fromkeys(fields(twin.singular), "VIP")
    for lang in LANGUAGES:
        text = t(key, lang, until=None, **params)
        assert "until" not in text and "有效期至" not in text and "至 永久" not in text, text


def test_keys_stay_stable_for_queued_outbox_rows():
    """Rows in outboxes name these keys; renaming one would leave them unsendable."""
    for key in (
        "access_extended",
        "invite_request",
        "invite_single",
        "invite_again",
        "invite_request_given",
        "invite_single_given",
        "invite_single_replaced",
        "granted_by_owner",
        "granted_by_owner_lifetime",
        "access_revoked_owner",
        "renew_reminder",
        "access_ended",
        "join_declined",
        "removed_no_access",
        "btn_join",
        "btn_renew",
        "btn_fix_payment",
        "btn_refund_extra",
        "owner_refund_failed",
        "renewal_payment_failed",
        "payment_failed",
    ):
        assert key in CATALOG, key
    text = t("access_extended", "en", group="G", until="2026-01-02T03:04:00+00:00")
    assert text == "Payment received: your access to G now runs until 2026-01-02 03:04 UTC."
    assert t("access_extended", "en", group="G", until=None) == (
        "Payment received: you now have lifetime access to G."
    )


def test_language_choice():
    assert pick_language(None, "zh-hans") == "zh"
    assert pick_language("en", "zh-hans") == "en"
    assert pick_language(None, None) == "en"
    assert t("lifetime", "zh") == "永久"
    assert t("lifetime", "fr") == "lifetime"


def test_no_key_is_defined_twice():
    assert isinstance(CATALOG["welcome"], Text)
    with pytest.raises(ValueError, match="twice"):
        msg("welcome", "Hello again")


def test_catalogs_compile_from_the_po_when_the_mo_is_missing_or_stale(tmp_path, monkeypatch):
    """An install without `make` (no .mo) or a .po edited since its .mo still speaks the
    .po's texts: they are compiled in memory instead of failing at the first message."""
    import shutil

    from bot import i18n

    shutil.copytree(i18n.LOCALES, tmp_path / "locales", ignore=shutil.ignore_patterns("*.mo"))
    monkeypatch.setattr(i18n, "LOCALES", tmp_path / "locales")
    i18n.catalogs.cache_clear()
    try:
        assert i18n.t("welcome", "zh", name="A").startswith("你好")
        assert i18n.t("welcome", "en", name="A").startswith("Hi")
    finally:
        i18n.catalogs.cache_clear()
