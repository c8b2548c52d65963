"""Issue 6: the sandbox provider is for the demo and the tests only. `gatepass run` and
`config check` refuse a [sandbox_pay] section in one line (exit 2), and the production web
app neither imports nor mounts the sandbox checkout page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gatepass.cli import main
from gatepass.config import SANDBOX_REFUSED

BASE = '[telegram]\ntoken = "123:abc"\n[database]\nurl = "sqlite+aiosqlite:///{db}"\n'


@pytest.mark.parametrize(
    "section", ["[sandbox_pay]\n", '[sandbox_pay]\nwebhook_secret = "s3cret"\n']
)
@pytest.mark.parametrize("command", ["run", "check"])
def test_a_sandbox_section_is_refused_in_one_line(tmp_path, capsys, section, command):
    path = tmp_path / "prod.toml"
    path.write_text(BASE.format(db=tmp_path / "x.db") + section)
    argv = (
        ["run", "--config", str(path)]
        if command == "run"
        else ["config", "check", "--config", str(path)]
    )
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == f"gatepass: config error: {SANDBOX_REFUSED}\n"
    assert captured.out == ""
    assert not (tmp_path / "x.db").exists()  # refused before anything started


def test_an_environment_override_cannot_sneak_the_sandbox_in(tmp_path, capsys, monkeypatch):
    path = tmp_path / "prod.toml"
    path.write_text(BASE.format(db=tmp_path / "x.db"))
    monkeypatch.setenv("GATEPASS__SANDBOX_PAY__WEBHOOK_SECRET", "x")
    assert main(["config", "check", "--config", str(path)]) == 2
    assert "sandbox_pay" in capsys.readouterr().err


def test_config_check_without_the_sandbox_is_ok(tmp_path, capsys):
    path = tmp_path / "prod.toml"
    path.write_text(BASE.format(db=tmp_path / "x.db"))
    assert main(["config", "check", "--config", str(path)]) == 0
    assert "config OK" in capsys.readouterr().out


def test_the_service_and_its_web_app_do_not_import_the_sandbox():
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys, gatepass.cli, gatepass.service, gatepass.web; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sandbox'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


async def test_the_checkout_page_is_mounted_only_when_injected(db, now):
    from aiohttp.test_utils import TestClient, TestServer

    from gatepass.web import SERVICE, build_web_app
    from sandbox.checkout_page import add_routes
    from tests.webhook_http import webhook_client

    async with webhook_client(db, now) as http:  # a Service with [sandbox_pay] configured
        resp = await http.client.get("/sandbox/pay/GPX")
        assert resp.status == 404 and "no such sandbox order" not in await resp.text()
        service = http.client.app[SERVICE]
        async with TestClient(TestServer(build_web_app(service, [add_routes]))) as mounted:
            resp = await mounted.get("/sandbox/pay/GPX")
            assert resp.status == 404 and await resp.text() == "no such sandbox order"
