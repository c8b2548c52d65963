"""Issue 7: every config and start-up mistake an operator meets ends as ONE line on stderr
naming the cause, exit 2, no traceback, from each command that meets it (`--debug` shows the
traceback). Runs the real entry point, `gatepass.cli.main`, in-process; the cases that start
the service also run as a subprocess, where stray log lines on stderr would show."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gatepass.cli import main
from tests.conftest import PG_URL
from tests.outside import BOT_TOKEN, STRIPE_KEY, Outside, closed_port

ROOT = Path(__file__).resolve().parents[2]
CSV = "telegram_id,username,group,expires_at\n1001,,1,\n"


@pytest.fixture(scope="module")
def outside() -> Iterator[Outside]:
    o = Outside()
    yield o
    o.close()


@dataclass
class Case:
    name: str
    needle: str  # what the one line must say


def toml(db: str, *, telegram: str = "", extra: str = "", web: str = "") -> str:
    tg = telegram or f'token = "{BOT_TOKEN}"\napi_server = "http://127.0.0.1:{closed_port()}"'
    return (
        f'[database]\nurl = "{db}"\n[web]\nport = {closed_port()}\n{web}\n[telegram]\n{tg}\n{extra}'
    )


class Setup:
    """Builds the config file (and the world) of one case in tmp_path."""

    def __init__(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Outside | None
    ) -> None:
        self.tmp, self.mp, self.outside = tmp_path, monkeypatch, outside
        self.db = f"sqlite+aiosqlite:///{tmp_path / 'gp.db'}"
        self.held: list[socket.socket] = []

    def write(self, text: str | bytes) -> Path:
        p = self.tmp / "gatepass.toml"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return p

    def close(self) -> None:
        for s in self.held:
            s.close()


def _unreadable(s: Setup) -> Path:
    p = s.write(toml(s.db))
    if os.geteuid() == 0:  # root reads anything: make the read fail as it would for others
        real = Path.read_bytes

        def read_bytes(self: Path) -> bytes:
            if self == p:
                raise PermissionError(13, "Permission denied", str(p))
            return real(self)

        s.mp.setattr(Path, "read_bytes", read_bytes)
    else:
        p.chmod(0)
    return p


def _port_in_use(s: Setup) -> Path:
    assert s.outside is not None
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    s.held.append(sock)
    port = sock.getsockname()[1]
    return s.write(
        f'[database]\nurl = "{s.db}"\n[web]\nport = {port}\n'
        f'[telegram]\ntoken = "{BOT_TOKEN}"\napi_server = "{s.outside.telegram_url}"\n'
    )


def _token_refused(s: Setup) -> Path:
    assert s.outside is not None
    return s.write(
        toml(
            s.db, telegram=f'token = "7100:a-wrong-secret"\napi_server = "{s.outside.telegram_url}"'
        )
    )


def _bot_api_down(s: Setup) -> Path:
    return s.write(toml(s.db))  # api_server on a closed port


def _with_telegram(s: Setup, db: str) -> str:
    """A config whose Bot API answers (so only the database fails)."""
    assert s.outside is not None
    return toml(db, telegram=f'token = "{BOT_TOKEN}"\napi_server = "{s.outside.telegram_url}"')


def _pg_down(s: Setup) -> Path:
    return s.write(
        _with_telegram(s, f"postgresql+asyncpg://gatepass@127.0.0.1:{closed_port()}/gatepass")
    )


def _pg_no_database(s: Setup) -> Path:
    if not PG_URL:
        pytest.skip("GATEPASS_TEST_DATABASE_URL is not set")
    base = PG_URL.rsplit("/", 1)[0]
    return s.write(_with_telegram(s, f"{base}/gatepass_no_such_database"))


CONFIG_CASES: list[tuple[Case, Callable[[Setup], Path]]] = [
    (Case("directory", "is a directory"), lambda s: s.tmp),
    (Case("unreadable", "permission denied"), _unreadable),
    (
        Case("not utf-8", "not UTF-8"),
        lambda s: s.write(toml(s.db, extra="# caf\xe9\n").encode("latin-1")),
    ),
    (
        Case("example unedited", "telegram.token: is the placeholder from config.example.toml"),
        lambda s: Path(shutil.copy(ROOT / "config.example.toml", s.tmp / "gatepass.toml")),
    ),
    (
        Case("webhook without secret", "telegram.webhook_secret: is required"),
        lambda s: s.write(toml(s.db, telegram=f'token = "{BOT_TOKEN}"\nmode = "webhook"')),
    ),
    (
        Case("redis url", "redis.url: must be a redis://"),
        lambda s: s.write(toml(s.db, extra='[redis]\nurl = "localhost:6379"\n')),
    ),
    (
        Case("api_server", "telegram.api_server: must be an http:// or https:// URL"),
        lambda s: s.write(toml(s.db, telegram=f'token = "{BOT_TOKEN}"\napi_server = "telegram"')),
    ),
    (
        Case("stripe api_base", "stripe.api_base: must be an http:// or https:// URL"),
        lambda s: s.write(
            toml(
                s.db,
                extra='[stripe]\nsecret_key = "sk_test_1"\n'
                'webhook_secret = "whsec_1"\napi_base = "stripe"\n',
            )
        ),
    ),
    (
        Case("empty secret", "stripe.secret_key: must not be empty"),
        lambda s: s.write(
            toml(s.db, extra='[stripe]\nsecret_key = ""\nwebhook_secret = "whsec_1"\n')
        ),
    ),
    (
        Case("empty token", "telegram.token: must not be empty"),
        lambda s: s.write(toml(s.db, telegram='token = " "')),
    ),
    (
        Case("malformed database url", "database.url: is not a valid database URL"),
        lambda s: s.write(toml("postgresql+asyncpg://u@host:port/db")),
    ),
    (
        Case("in-memory database", "database.url: is an in-memory SQLite database"),
        lambda s: s.write(toml("sqlite+aiosqlite:///:memory:")),
    ),
    (
        Case("sqlite folder missing", "database.url: the folder"),
        lambda s: s.write(toml(f"sqlite+aiosqlite:///{s.tmp / 'no' / 'such' / 'gp.db'}")),
    ),
]

DATABASE_CASES: list[tuple[Case, Callable[[Setup], Path]]] = [
    (Case("postgresql down", "connection refused: is it running?"), _pg_down),
    (Case("database missing", "does not exist"), _pg_no_database),
]

SERVICE_CASES: list[tuple[Case, Callable[[Setup], Path]]] = [
    (Case("token refused", "telegram.token: Telegram refused the token (401"), _token_refused),
    (Case("bot api unreachable", "telegram.api_server: cannot reach the Bot API"), _bot_api_down),
    (Case("port in use", "is already in use"), _port_in_use),
]


def argv_for(command: str, path: Path, tmp: Path) -> list[str]:
    if command == "members import":
        csv = tmp / "members.csv"
        csv.write_text(CSV)
        return ["members", "import", str(csv), "--config", str(path)]
    return [*command.split(), "--config", str(path)]


def assert_one_line(err: str, needle: str) -> None:
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("gatepass: ") and needle in err, err
    assert "Traceback" not in err


def table() -> list[object]:
    rows: list[object] = []
    for case, make in CONFIG_CASES:
        for cmd in ("config check", "db upgrade", "run", "members import"):
            rows.append(pytest.param(case, make, cmd, id=f"{case.name}-{cmd}"))
    for case, make in DATABASE_CASES:
        for cmd in ("db upgrade", "run", "members import", "config check --online"):
            rows.append(pytest.param(case, make, cmd, id=f"{case.name}-{cmd}"))
    for case, make in SERVICE_CASES:
        cmds = ["run"] + (["config check --online"] if case.name != "port in use" else [])
        for cmd in cmds:
            rows.append(pytest.param(case, make, cmd, id=f"{case.name}-{cmd}"))
    return rows


@pytest.mark.parametrize("case,make,command", table())
def test_one_line_exit_2(
    case: Case,
    make: Callable[[Setup], Path],
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    outside: Outside,
) -> None:
    monkeypatch.chdir(tmp_path)
    setup = Setup(tmp_path, monkeypatch, outside)
    try:
        path = make(setup)
        if command == "config check --online" and case.name in (
            "token refused",
            "bot api unreachable",
        ):
            assert main(["db", "upgrade", "--config", str(path)]) == 0  # only Telegram fails
            capsys.readouterr()
        assert main(argv_for(command, path, tmp_path)) == 2
        assert_one_line(capsys.readouterr().err, case.needle)
    finally:
        setup.close()


SUBPROCESS = [
    pytest.param(CONFIG_CASES[0], "run", id="directory-run"),
    pytest.param(CONFIG_CASES[3], "db upgrade", id="example-db-upgrade"),
    pytest.param(DATABASE_CASES[0], "db upgrade", id="pg-down-db-upgrade"),
    pytest.param(SERVICE_CASES[0], "run", id="token-refused-run"),
    pytest.param(SERVICE_CASES[1], "run", id="unreachable-run"),
    pytest.param(SERVICE_CASES[2], "run", id="port-in-use-run"),
]


def gatepass(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEPASS__")}
    return subprocess.run(
        [sys.executable, "-m", "gatepass.cli", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("row,command", SUBPROCESS)
def test_one_line_from_a_real_process(
    row: tuple[Case, Callable[[Setup], Path]],
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    outside: Outside,
) -> None:
    """Here the service's own logging reaches stderr as it does for an operator."""
    case, make = row
    setup = Setup(tmp_path, monkeypatch, outside)
    try:
        path = make(setup)
        done = gatepass(*argv_for(command, path, tmp_path), cwd=tmp_path)
    finally:
        setup.close()
    assert done.returncode == 2, done.stderr
    assert_one_line(done.stderr, case.needle)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    path = tmp_path / "gatepass.toml"
    path.write_text(toml(f"postgresql+asyncpg://gatepass@127.0.0.1:{closed_port()}/gatepass"))
    done = gatepass("--debug", "db", "upgrade", "--config", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" in done.stderr and "ConnectionRefusedError" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("gatepass: database: cannot connect")


def test_demo_start_up_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import gatepass.demo

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        monkeypatch.setattr(gatepass.demo, "_free_port", lambda: held.getsockname()[1])
        assert main(["demo", "--quiet"]) == 2
    assert_one_line(capsys.readouterr().err, "web.port: 127.0.0.1:")


def test_the_service_is_refused_a_missing_telegram_section_by_config_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "x.db"}"\n')
    assert main(["config", "check", "--config", str(path)]) == 2
    assert_one_line(capsys.readouterr().err, "telegram.token: is required")


def test_stripe_key_and_token_good_is_not_an_error(
    tmp_path: Path, outside: Outside, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same fixtures with nothing wrong: exit 0 (so the table's failures are real)."""
    path = tmp_path / "c.toml"
    path.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "x.db"}"\n'
        f'[telegram]\ntoken = "{BOT_TOKEN}"\napi_server = "{outside.telegram_url}"\n'
        f'[stripe]\nsecret_key = "{STRIPE_KEY}"\nwebhook_secret = "whsec_1"\n'
        f'api_base = "{outside.stripe_url}"\n'
    )
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    assert main(["config", "check", "--online", "--config", str(path)]) == 0
    assert capsys.readouterr().err == ""
