"""Alipay key files the config check accepts must also be keys the provider can use: a key
saved with a byte-order mark (Windows Notepad) or exported by `openssl pkcs12` (with its
"Bag Attributes" lines before the PEM) passed the check and then made start-up die with a
traceback. Signing with them must work, proven against the local gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatepass.config import load_settings
from gatepass.providers import build_providers
from sandbox.alipay_host import FakeAlipay, private_pem, public_pem
from storage.clock import MovableClock


def _bom(text: str) -> bytes:
    return b"\xef\xbb\xbf" + text.encode()


def _bag(text: str) -> bytes:
    return b"Bag Attributes\n    localKeyID: 01 00 00 00 \nKey Attributes: <No Attributes>\n" + (
        text.encode()
    )


@pytest.mark.parametrize("dress", [_bom, _bag], ids=["bom", "bag-attributes"])
async def test_a_key_file_the_config_check_accepts_signs_and_verifies(tmp_path: Path, dress):
    host = FakeAlipay(clock=MovableClock())
    section = await host.start_for("https://pay.example.org")
    app, alipay = tmp_path / "app.pem", tmp_path / "alipay.pem"
    app.write_bytes(dress(private_pem(host.app_key)))
    alipay.write_bytes(dress(public_pem(host.alipay_key)))
    config = tmp_path / "c.toml"
    config.write_text(
        '[web]\npublic_url = "https://pay.example.org"\n'
        f'[alipay]\napp_id = "{section["app_id"]}"\napp_private_key_path = "{app}"\n'
        f'alipay_public_key_path = "{alipay}"\ngateway = "{section["gateway"]}"\n'
    )
    provider = build_providers(load_settings(config, environ={}))["alipay"]
    try:
        # The gateway verifies our signature, we verify its answer: the keys work.
        assert "accepted" in await provider.check_keys()  # type: ignore[attr-defined]
    finally:
        await provider.close()
        await host.stop()
