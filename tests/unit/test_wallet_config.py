"""The optional [wallet] config section: defaults when absent, the values it maps to
WalletRules, and one-line, key-naming errors for bad values (file and environment)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from billing.wallet import WalletRules
from gatepass.config import ConfigError, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return load_settings(p, environ=env or {})


def test_absent_section_means_the_defaults(tmp_path):
    s = _load(tmp_path, "")
    assert s.wallet.enabled
    assert s.wallet.rules() == WalletRules(
        points_per_unit={"CNY": 10},
        points_min=10,
        points_cap_percent=50,
        earn_points_per_unit=1,
        pin_max_tries=5,
        pin_lock_minutes=15,
    )


def test_values_from_the_file_and_the_environment(tmp_path):
    s = _load(
        tmp_path,
        "[wallet]\npoints_per_unit = { cny = 100, USD = 50 }\npoints_cap_percent = 100\n"
        "earn_points_per_unit = 0\npin_lock_minutes = 30\n",
        {"GATEPASS__WALLET__POINTS_MIN": "1", "GATEPASS__WALLET__ENABLED": "false"},
    )
    assert not s.wallet.enabled
    rules = s.wallet.rules()
    assert rules.points_per_unit == {"CNY": 100, "USD": 50}
    assert (rules.points_min, rules.points_cap_percent, rules.earn_points_per_unit) == (1, 100, 0)
    assert (rules.pin_max_tries, rules.pin_lock_minutes) == (5, 30)


def test_the_example_section_is_the_defaults():
    text = EXAMPLE.read_text()
    assert "\n[wallet]\n" in text
    section = text.split("\n[wallet]\n", 1)[1].split("\n\n", 1)[0]
    s = load_settings(None, environ={})
    assert s.wallet.model_validate(tomllib.loads(section)) == s.wallet


@pytest.mark.parametrize(
    "text,message",
    [
        ("points_cap_percent = 150", "wallet.points_cap_percent: Input should be less than"),
        ("points_cap_percent = -1", "wallet.points_cap_percent: Input should be greater than"),
        ("points_min = 0", "wallet.points_min: Input should be greater than or equal to 1"),
        ("earn_points_per_unit = -2", "wallet.earn_points_per_unit: Input should be greater"),
        ("pin_max_tries = 0", "wallet.pin_max_tries: Input should be greater"),
        ("pin_lock_minutes = 0", "wallet.pin_lock_minutes: Input should be greater"),
        ('points_min = "ten"', "wallet.points_min: Input should be a valid integer"),
        ("enabled = 3", "wallet.enabled: Input should be a valid boolean"),
        (
            "points_per_unit = { FOO = 10 }",
            "wallet.points_per_unit: 'FOO' is not a currency points can pay (like CNY)",
        ),
        (
            "points_per_unit = { XTR = 10 }",
            "wallet.points_per_unit: 'XTR' is not a currency points can pay (like CNY)",
        ),
        (
            "points_per_unit = { CNY = 0 }",
            "wallet.points_per_unit: CNY = 0: must be a whole number 1-1000000",
        ),
        ("points_per_unit = { CNY = 1.5 }", "wallet.points_per_unit.CNY: Input should be"),
        ("points_per_unit = 10", "wallet.points_per_unit: Input should be a valid dictionary"),
        ("pointsmin = 10", "wallet.pointsmin: is not a known key"),
    ],
)
def test_bad_values_are_refused_in_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, f"[wallet]\n{text}\n")
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_a_bad_environment_value_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^wallet\.points_cap_percent: "):
        _load(tmp_path, "", {"GATEPASS__WALLET__POINTS_CAP_PERCENT": "101"})
