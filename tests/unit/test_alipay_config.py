"""The [alipay] section: key files checked as PEM RSA keys when the config is read (one line
naming the key), the gateway a URL; the provider built with the service's public_url; and
`config check --online` proving the keys with a query that moves no money."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatepass.config import ConfigError, load_settings
from gatepass.online import check_alipay
from gatepass.providers import build_providers
from sandbox.alipay_host import FakeAlipay, new_key, private_pem, public_pem


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("alipay-keys")
    app, alipay = folder / "app.pem", folder / "alipay_pub.pem"
    app.write_text(private_pem(new_key()))
    alipay.write_text(public_pem(new_key()))
    return app, alipay


def section(app: Path, alipay: Path, gateway: str = "https://openapi.alipay.com/gateway.do"):
    return (
        '[web]\npublic_url = "https://pay.example.org"\n'
        f'[alipay]\napp_id = "2021000122600001"\napp_private_key_path = "{app}"\n'
        f'alipay_public_key_path = "{alipay}"\ngateway = "{gateway}"\n'
    )


def load(tmp_path: Path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_settings(path, environ={})


def test_a_good_section_builds_the_provider(tmp_path, keys):
    settings = load(tmp_path, section(*keys))
    assert settings.alipay is not None and settings.alipay.app_id == "2021000122600001"
    provider = build_providers(settings)["alipay"]
    assert provider.name == "alipay" and provider.accepts("CNY")
    assert provider.notify_url == "https://pay.example.org/webhooks/alipay"  # type: ignore[attr-defined]


def test_bad_keys_and_gateways_are_one_line_naming_the_key(tmp_path, keys):
    app, alipay = keys
    bare = tmp_path / "bare.txt"
    bare.write_text("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")  # as the console shows it
    garbled = tmp_path / "garbled.pem"
    garbled.write_text("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    cases = [
        (section(tmp_path / "missing.pem", alipay), "alipay.app_private_key_path", "not found"),
        (section(alipay, alipay), "alipay.app_private_key_path", "not a PEM RSA private key"),
        (section(app, app), "alipay.alipay_public_key_path", "not a PEM RSA public key"),
        (section(app, bare), "alipay.alipay_public_key_path", "not a PEM file"),
        (section(app, garbled), "alipay.alipay_public_key_path", "not a PEM RSA public key"),
        (section(app, alipay, "ftp://x/gateway.do"), "alipay.gateway", "http:// or https://"),
        (section(app, alipay).replace("2021000122600001", ""), "alipay.app_id", "empty"),
    ]
    for text, key, why in cases:
        with pytest.raises(ConfigError) as err:
            load(tmp_path, text)
        line = str(err.value)
        assert line.startswith(f"{key}: ") and why in line and "\n" not in line, line


async def test_online_check_proves_the_keys_against_the_gateway(tmp_path):
    host = FakeAlipay()
    found = await host.start_for("https://pay.example.org")
    try:
        good = load(
            tmp_path,
            section(
                Path(found["app_private_key_path"]),
                Path(found["alipay_public_key_path"]),
                found["gateway"],
            ),
        )
        check = await check_alipay(good)
        assert check.ok and "accepted" in check.line
        assert host.book.trades == {}  # nothing was created
        wrong = tmp_path / "wrong.pem"
        wrong.write_text(private_pem(new_key()))
        bad = load(
            tmp_path,
            section(wrong, Path(found["alipay_public_key_path"]), found["gateway"]),
        )
        check = await check_alipay(bad)
        assert not check.ok and "isv.invalid-signature" in check.line
        assert check.line.startswith("alipay: ")
    finally:
        await host.stop()
