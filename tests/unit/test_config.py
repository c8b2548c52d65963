from pathlib import Path

import pytest

from gatepass.cli import main
from gatepass.config import ConfigError, load_settings

GOOD = """
[database]
url = "sqlite+aiosqlite:///x.db"
[telegram]
token = "123:abc"
admin_ids = [42]
[stripe]
secret_key = "sk_test_1"
webhook_secret = "whsec_1"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_file_and_secrets(tmp_path):
    s = load_settings(write(tmp_path, GOOD), environ={})
    assert s.telegram.admin_ids == [42]
    assert s.stripe.secret_key.get_secret_value() == "sk_test_1"
    assert "sk_test_1" not in repr(s)
    assert s.wechatpay is None and s.alipay is None


def test_env_overrides_the_file(tmp_path):
    s = load_settings(write(tmp_path, GOOD), environ={
        "GATEPASS__STRIPE__SECRET_KEY": "sk_test_env", "GATEPASS__WEB__PORT": "9000",
        "GATEPASS__TELEGRAM__ADMIN_IDS": "[1, 2]"})
    assert s.stripe.secret_key.get_secret_value() == "sk_test_env"
    assert s.web.port == 9000 and s.telegram.admin_ids == [1, 2]


def test_env_alone_can_add_a_section():
    s = load_settings(None, environ={"GATEPASS__TELEGRAM__TOKEN": "1:x"})
    assert s.telegram is not None


@pytest.mark.parametrize("text,env,message", [
    ('[telegram]\nadmin_ids=[1]', {}, "telegram.token: is required"),
    ('[telegram]\ntoken="nope"', {}, "telegram.token: must look like"),
    ('[web]\nport="x"', {}, "web.port:"),
    ('[web]\nprot=1', {}, "web.prot: is not a known key"),
    ('[database]\nurl="mysql://x"', {}, "database.url: must start with"),
    ('[stripe]\nsecret_key="sk"', {}, "stripe.webhook_secret: is required"),
    ("", {"GATEPASS__STRIPE": "x"}, "GATEPASS__STRIPE: expected GATEPASS__SECTION__KEY"),
    ("not toml [", {}, "not valid TOML"),
    ('[scheduler]\nreconcile_after_minutes=0', {}, "scheduler.reconcile_after_minutes:"),
    ('[scheduler]\nreconcile_batch=-1', {}, "scheduler.reconcile_batch:"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, text, env, message):
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text), environ=env)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "none.toml", environ={})


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    assert main(["config", "check", "--config", str(write(tmp_path, '[web]\nport=-1'))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gatepass: config error: web.port:") and "\n" not in err


def test_example_config_is_valid(capsys):
    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    assert main(["config", "check", "--config", str(example)]) == 0
    assert "stripe" in capsys.readouterr().out


def test_db_upgrade_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GATEPASS__DATABASE__URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "cli.db").exists()


def test_sections_not_yet_available_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="wechatpay: not available"):
        load_settings(write(tmp_path, '[wechatpay]\nmchid="1"'), environ={})


def test_reconciliation_keys_reach_the_sweep(tmp_path):
    from datetime import timedelta

    from gatepass.service import Service

    s = load_settings(write(tmp_path, GOOD + "[scheduler]\nreconcile_after_minutes = 10\n"
                            "reconcile_batch = 7\n"), environ={})
    service = Service(s)
    try:
        bound = service.sweeps.reconcile_pending.keywords  # type: ignore[union-attr]
        assert (bound["min_age"], bound["limit"]) == (timedelta(minutes=10), 7)
    finally:
        import asyncio

        asyncio.run(service.db.dispose())
