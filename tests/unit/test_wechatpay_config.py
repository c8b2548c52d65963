"""The [wechatpay] section: validated when read (key files exist and parse as PEM, the APIv3
key is 32 bytes, api_base is an http(s) URL), each problem one line naming the key; built
into the provider with notify_url under web.public_url; and `config check --online` proves
the keys against the local WeChat Pay host without making a payment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatepass.cli import main
from gatepass.config import ConfigError, load_settings
from gatepass.providers import build_providers
from sandbox.wechatpay.crypto import new_key, private_pem, public_pem
from sandbox.wechatpay_host import FakeWechatPay
from tests.outside import BOT_TOKEN, Outside, closed_port


@pytest.fixture(scope="module")
def outside() -> Iterator[Outside]:
    o = Outside()
    yield o
    o.close()


@pytest.fixture(scope="module")
def host(outside: Outside) -> Iterator[FakeWechatPay]:
    h = FakeWechatPay()
    outside.run(h.start())
    yield h
    outside.run(h.stop())


def keys(tmp_path: Path) -> tuple[Path, Path]:
    merchant, platform = tmp_path / "apiclient_key.pem", tmp_path / "pub_key.pem"
    merchant.write_bytes(private_pem(new_key()))
    platform.write_bytes(public_pem(new_key().public_key()))
    return merchant, platform


def section(tmp_path: Path, **over: Any) -> dict[str, Any]:
    merchant, platform = keys(tmp_path)
    return {
        "mchid": "1900000109",
        "appid": "wxd678efh567hg6787",
        "apiv3_key": "0123456789abcdef0123456789ABCDEF",
        "private_key_path": str(merchant),
        "cert_serial_no": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        "platform_public_key_path": str(platform),
        "platform_public_key_id": "PUB_KEY_ID_0114232134912410000000000000",
        "api_base": "https://api.mch.weixin.qq.com",
    } | over


def toml(tmp_path: Path, wx: dict[str, Any], extra: str = "") -> Path:
    lines = "".join(f'{k} = "{v}"\n' for k, v in wx.items())
    path = tmp_path / "gatepass.toml"
    path.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "gp.db"}"\n'
        f'[web]\npublic_url = "https://shop.example"\n'
        f'[telegram]\ntoken = "{BOT_TOKEN}"\n' + extra + f"[wechatpay]\n{lines}"
    )
    return path


def test_a_valid_section_builds_the_provider_with_our_notify_url(tmp_path):
    settings = load_settings(toml(tmp_path, section(tmp_path)), environ={})
    providers = build_providers(settings)
    wx = providers["wechatpay"]
    assert wx.name == "wechatpay" and wx.accepts("CNY") and not wx.accepts("USD")
    assert getattr(wx, "notify_url") == "https://shop.example/webhooks/wechatpay"  # noqa: B009


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("private_key_path", "/nonexistent/apiclient_key.pem", "does not exist"),
        ("platform_public_key_path", "/nonexistent/pub_key.pem", "does not exist"),
        ("apiv3_key", "too-short", "exactly 32 bytes"),
        ("apiv3_key", "键" * 11, "exactly 32 bytes"),  # 11 characters, 33 bytes
        ("api_base", "ftp://api.mch.weixin.qq.com", "http:// or https://"),
        ("mchid", "merchant", "digits"),
        ("platform_public_key_id", "PUB KEY", "merchant console"),
    ],
)
def test_each_bad_key_is_one_line_naming_it(tmp_path, key, value, message):
    path = toml(tmp_path, section(tmp_path, **{key: value}))
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    text = str(err.value)
    assert text.startswith(f"wechatpay.{key}: ") and message in text and "\n" not in text


def test_key_files_must_parse_as_the_right_pem(tmp_path):
    wx = section(tmp_path)
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello")
    with pytest.raises(ConfigError, match=r"wechatpay.private_key_path: .* is not a PEM file"):
        load_settings(toml(tmp_path, wx | {"private_key_path": str(not_pem)}), environ={})
    # The platform's public key where the merchant's private key belongs, and back.
    with pytest.raises(ConfigError, match=r"wechatpay\.private_key_path: .*PKCS#8 PEM private"):
        load_settings(
            toml(tmp_path, wx | {"private_key_path": wx["platform_public_key_path"]}), environ={}
        )
    with pytest.raises(ConfigError, match=r"wechatpay\.platform_public_key_path: .*public key"):
        load_settings(
            toml(tmp_path, wx | {"platform_public_key_path": wx["private_key_path"]}), environ={}
        )


def test_the_environment_overrides_a_key(tmp_path):
    path = toml(tmp_path, section(tmp_path))
    with pytest.raises(ConfigError, match=r"wechatpay\.apiv3_key: must be exactly 32 bytes"):
        load_settings(path, environ={"GATEPASS__WECHATPAY__APIV3_KEY": "short"})


def run_check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["config", "check", "--online", "--config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def online_toml(tmp_path: Path, outside: Outside, wx: dict[str, Any]) -> Path:
    tg = f'[telegram]\ntoken = "{BOT_TOKEN}"\napi_server = "{outside.telegram_url}"\n'
    path = toml(tmp_path, wx)
    path.write_text(path.read_text().replace(f'[telegram]\ntoken = "{BOT_TOKEN}"\n', tg))
    return path


def test_config_check_online_proves_the_keys_without_a_payment(tmp_path, outside, host, capsys):
    path = online_toml(tmp_path, outside, host.config())
    _, out, err = run_check(path, capsys)
    assert "payment providers offered: wechatpay" in out
    assert "ok: wechatpay: the merchant key is accepted" in out and "ORDER_NOT_EXIST" in out
    assert "wechatpay" not in err
    assert host.merchant.orders == {} and host.refunds == []


def test_config_check_online_names_the_key_that_is_wrong(tmp_path, outside, host, capsys):
    other = tmp_path / "other"
    other.mkdir()
    merchant, platform = keys(other)
    cases = {
        "wechatpay.private_key_path: WeChat Pay refused our signature": {
            "private_key_path": str(merchant)
        },
        "wechatpay.platform_public_key_path: WeChat Pay's answer does not verify": {
            "platform_public_key_path": str(platform)
        },
        "wechatpay.api_base: wechatpay: cannot reach": {
            "api_base": f"http://127.0.0.1:{closed_port()}"
        },
    }
    for expected, change in cases.items():
        path = online_toml(tmp_path, outside, host.config() | change)
        code, _, err = run_check(path, capsys)
        lines = [ln for ln in err.splitlines() if "wechatpay" in ln]
        assert code == 2 and len(lines) == 1 and expected in lines[0], (expected, err)
