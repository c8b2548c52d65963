"""Every message key the code uses exists in the catalog, in English and Chinese, and every
text formats with the parameters it is given. A missing key would only show at delivery."""
from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from bot.i18n import TEXTS, pick_language, t

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = [
    r'"key":\s*"([a-z_]+)"', r'notice_key\s*=\s*"([a-z_]+)"', r'\bt\(\s*"([a-z_]+)"',
    r'RuleError\(\s*"([a-z_]+)"', r'"text_key":\s*"([a-z_]+)"', r'text_key\s*=\s*"([a-z_]+)"',
    r'TEXTS\["([a-z_]+)"\]', r'ArgError\(\s*"([a-z_]+)"',
]


def used_keys() -> set[str]:
    keys: set[str] = set()
    for package in ("bot", "membership", "billing", "scheduler", "gatepass"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text("utf-8")
            for pattern in PATTERNS:
                keys.update(re.findall(pattern, text))
    return keys


def test_every_used_key_is_in_the_catalog():
    missing = sorted(k for k in used_keys() if k not in TEXTS)
    assert not missing, f"keys used in code but missing from bot/i18n.py: {missing}"


@pytest.mark.parametrize("key", sorted(TEXTS))
def test_each_text_has_both_languages_with_the_same_fields(key):
    entry = TEXTS[key]
    assert set(entry) == {"en", "zh"}, key
    fields = [{f for _, f, _, _ in string.Formatter().parse(entry[lang]) if f} for lang in
              ("en", "zh")]
    assert fields[0] == fields[1], key


def test_language_choice():
    assert pick_language(None, "zh-hans") == "zh"
    assert pick_language("en", "zh-hans") == "en"
    assert pick_language(None, None) == "en"
    assert t("lifetime", "zh") == "永久"
    assert "2026-01-02 03:04 UTC" in t("access_extended", "en", group="G",
                                       until="2026-01-02T03:04:00+00:00")


def test_no_key_is_defined_twice():
    """A repeated key in the TEXTS literal silently replaces the first text."""
    import ast
    from collections import Counter

    tree = ast.parse((ROOT / "bot" / "i18n.py").read_text("utf-8"))
    texts = next(n.value for n in ast.walk(tree) if isinstance(n, ast.AnnAssign)
                 and getattr(n.target, "id", None) == "TEXTS")
    counts = Counter(k.value for k in texts.keys if isinstance(k, ast.Constant))
    assert [k for k, n in counts.items() if n > 1] == []
