"""The [wechat] section and `gatepass wechat`: the section is validated when read (endpoint
"host:port", a real token, positive budgets), each problem one line naming the key;
`config check` reports it, and `--online` asks the puppet service (the local one) whether it
answers and takes the token; `gatepass wechat` without the section is one line and exit 2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatepass.cli import main
from gatepass.config import ConfigError, load_settings
from gatepass.online import check_wechat
from tests.outside import closed_port
from tests.wechat_world import PuppetService, node_missing

BASE = """
[database]
url = "sqlite+aiosqlite:///{db}"
[telegram]
token = "123:abc"
"""
WECHAT = """
[wechat]
endpoint = "127.0.0.1:8788"
token = "insecure_5d7c0a4e"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(BASE.format(db=tmp_path / "g.db") + text)
    return p


def test_the_section_with_its_defaults(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, WECHAT), environ={})
    assert s.wechat is not None
    assert s.wechat.endpoint == "127.0.0.1:8788"
    assert s.wechat.token.get_secret_value() == "insecure_5d7c0a4e"
    assert "insecure_5d7c0a4e" not in repr(s)
    # Slow on purpose: one message every 2 s to a contact, 20 a minute in all.
    assert (s.wechat.send_per_minute, s.wechat.per_chat_per_minute) == (20, 30)
    assert s.wechat.per_room_per_minute == 10


def test_absent_section_is_none(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, ""), environ={}).wechat is None


def test_environment_overrides(tmp_path: Path) -> None:
    s = load_settings(
        write(tmp_path, WECHAT),
        environ={
            "GATEPASS__WECHAT__ENDPOINT": "puppet.internal:9001",
            "GATEPASS__WECHAT__SEND_PER_MINUTE": "6",
        },
    )
    assert s.wechat is not None
    assert (s.wechat.endpoint, s.wechat.send_per_minute) == ("puppet.internal:9001", 6)


@pytest.mark.parametrize(
    "section,message",
    [
        ('[wechat]\ntoken = "t"', "wechat.endpoint: is required"),
        ('[wechat]\nendpoint = "127.0.0.1:8788"', "wechat.token: is required"),
        (
            '[wechat]\nendpoint = "http://127.0.0.1:8788"\ntoken = "t"',
            'wechat.endpoint: must be "host:port" of the puppet service',
        ),
        (
            '[wechat]\nendpoint = "127.0.0.1"\ntoken = "t"',
            'wechat.endpoint: must be "host:port"',
        ),
        (
            '[wechat]\nendpoint = "127.0.0.1:port"\ntoken = "t"',
            "wechat.endpoint: has no valid port (1-65535)",
        ),
        (
            '[wechat]\nendpoint = "127.0.0.1:70000"\ntoken = "t"',
            "wechat.endpoint: has no valid port (1-65535)",
        ),
        ('[wechat]\nendpoint = "h:1"\ntoken = " "', "wechat.token: must not be empty"),
        (
            '[wechat]\nendpoint = "h:1"\ntoken = "replace-with-your-puppet-service-token"',
            "wechat.token: is the placeholder from config.example.toml",
        ),
        (
            '[wechat]\nendpoint = "h:1"\ntoken = "t"\nsend_per_minute = 0',
            "wechat.send_per_minute: Input should be greater than 0",
        ),
        ('[wechat]\nendpoint = "h:1"\ntoken = "t"\nspeed = 1', "wechat.speed: is not a known key"),
    ],
)
def test_bad_values_are_one_line(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, section), environ={})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_config_check_reports_the_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check", "--config", str(write(tmp_path, WECHAT))]) == 0
    out = capsys.readouterr().out
    assert "wechat: puppet service at 127.0.0.1:8788\n" in out


def test_gatepass_wechat_needs_the_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["wechat", "--config", str(write(tmp_path, ""))]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "gatepass: config error: wechat.endpoint: is required (the [wechat] section is missing)\n"
    )


def test_gatepass_wechat_bad_section_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[wechat]\nendpoint = "nowhere"\ntoken = "t"')
    assert main(["wechat", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('gatepass: config error: wechat.endpoint: must be "host:port"')
    assert err.count("\n") == 1


@pytest.fixture(scope="module")
def puppet() -> Iterator[PuppetService]:
    if node_missing() is not None:
        pytest.skip(str(node_missing()))
    service = PuppetService()
    service.start()
    yield service
    service.stop()


async def test_online_check_the_puppet_service_takes_the_token(puppet: PuppetService) -> None:
    check = await check_wechat(puppet.endpoint, puppet.token)
    assert check.ok, check.line
    assert check.line.startswith(f"wechat: the puppet service at {puppet.endpoint} answers")


async def test_online_check_a_wrong_token(puppet: PuppetService) -> None:
    check = await check_wechat(puppet.endpoint, "insecure_not-this-one")
    assert not check.ok
    assert check.line == f"wechat.token: the puppet service at {puppet.endpoint} refuses it"


async def test_online_check_nothing_at_the_endpoint() -> None:
    endpoint = f"127.0.0.1:{closed_port()}"
    check = await check_wechat(endpoint, "t")
    assert not check.ok
    assert check.line.startswith(f"wechat.endpoint: no puppet service answers at {endpoint} (")
