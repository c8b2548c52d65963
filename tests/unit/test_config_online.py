"""`gatepass config check --online` proves the outside, one line per check: the database is
reachable and at the newest schema, getMe answers (the bot's @username), each provider's key
is accepted, Redis answers PING. Against the Bot API emulator, the local Stripe host, the
machine's Redis (GATEPASS_TEST_REDIS_URL) and PostgreSQL (GATEPASS_TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe

from gatepass.cli import main
from tests.conftest import PG_URL, REDIS_URL
from tests.outside import BOT_TOKEN, BOT_USERNAME, STRIPE_KEY, Outside, closed_port


@pytest.fixture(scope="module")
def outside() -> Iterator[Outside]:
    o = Outside()
    yield o
    o.close()


def config(
    tmp_path: Path,
    outside: Outside,
    *,
    db: str | None = None,
    token: str = BOT_TOKEN,
    stripe_key: str = STRIPE_KEY,
    redis: str | None = None,
) -> Path:
    db = db or f"sqlite+aiosqlite:///{tmp_path / 'gp.db'}"
    text = (
        f'[database]\nurl = "{db}"\n'
        f'[telegram]\ntoken = "{token}"\napi_server = "{outside.telegram_url}"\n'
        f'[stripe]\nsecret_key = "{stripe_key}"\nwebhook_secret = "whsec_1"\n'
        f'api_base = "{outside.stripe_url}"\n'
    )
    if redis:
        text += f'[redis]\nurl = "{redis}"\n'
    path = tmp_path / "gatepass.toml"
    path.write_text(text)
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], list[str]]:
    code = main(["config", "check", "--online", "--config", str(path)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_all_checks_pass(
    tmp_path: Path, outside: Outside, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, outside, redis=REDIS_URL)
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    capsys.readouterr()
    code, out, err = check(path, capsys)
    assert (code, err) == (0, [])
    assert out[0].startswith("config OK")
    assert out[1].startswith("ok: database: SQLite file") and "newest revision" in out[1]
    assert out[2] == f"ok: telegram: getMe answers: the bot is @{BOT_USERNAME} (id 7100)"
    assert out[3] == "ok: stripe: the secret key is accepted (test mode)"
    if REDIS_URL:
        assert out[4].startswith("ok: redis:") and out[4].endswith("answers PING")
    assert len(out) == 4 + bool(REDIS_URL)


def test_each_failure_is_its_own_line(
    tmp_path: Path, outside: Outside, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(
        tmp_path,
        outside,
        token="7100:not-the-secret",
        stripe_key="sk_test_wrong_key",
        redis=f"redis://127.0.0.1:{closed_port()}/0",
    )
    code, out, err = check(path, capsys)
    assert code == 2
    assert out == ["config OK; payment providers offered: stripe"]
    assert (
        err[0].startswith("gatepass: database: the SQLite file") and "does not exist yet" in err[0]
    )
    assert err[1].startswith("gatepass: telegram.token: Telegram refused the token (401")
    assert err[2].startswith(
        "gatepass: stripe.secret_key: Stripe refused the key (401: "
        "Invalid API Key provided: sk_test_"
    )
    assert err[3].startswith("gatepass: redis.url: 127.0.0.1:") and "PING" in err[3]
    assert len(err) == 4
    assert not (tmp_path / "gp.db").exists()  # a check creates nothing


def test_a_database_without_the_schema(
    tmp_path: Path, outside: Outside, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "gp.db").touch()
    code, _, err = check(config(tmp_path, outside), capsys)
    assert code == 2
    assert err == [
        (
            f"gatepass: database: SQLite file {tmp_path / 'gp.db'} has no gatepass "
            "schema yet; run `gatepass db upgrade`"
        )
    ]


def test_a_database_behind_the_newest_revision(
    tmp_path: Path, outside: Outside, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    path = config(tmp_path, outside)
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    with sqlite3.connect(tmp_path / "gp.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0000_older'")
    capsys.readouterr()
    code, _, err = check(path, capsys)
    assert code == 2 and len(err) == 1
    assert "is at revision 0000_older, the newest is" in err[0] and "db upgrade" in err[0]


@pytest.mark.skipif(not PG_URL, reason="GATEPASS_TEST_DATABASE_URL is not set")
def test_postgresql_reachable_and_migrated(
    tmp_path: Path, outside: Outside, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncpg

    assert PG_URL is not None
    name = f"gatepass_check_{secrets.token_hex(4)}"
    admin = PG_URL.replace("postgresql+asyncpg://", "postgresql://")

    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(sql(f'CREATE DATABASE "{name}"'))
    try:
        path = config(tmp_path, outside, db=f"{PG_URL.rsplit('/', 1)[0]}/{name}")
        code, _, err = check(path, capsys)
        assert code == 2 and len(err) == 1 and "has no gatepass schema yet" in err[0]
        assert main(["db", "upgrade", "--config", str(path)]) == 0
        capsys.readouterr()
        code, out, err = check(path, capsys)
        assert (code, err) == (0, [])
        assert out[1].startswith("ok: database: PostgreSQL at ") and name in out[1]
    finally:
        asyncio.run(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_the_stripe_host_answers_balance_like_stripe(outside: Outside) -> None:
    """The official SDK reads /v1/balance from the local host, and gets Stripe's 401 for a
    key it does not know."""

    async def retrieve(key: str) -> object:
        http = stripe.AIOHTTPClient()
        client = stripe.StripeClient(
            key, base_addresses={"api": outside.stripe_url}, http_client=http
        )
        try:
            return await client.v1.balance.retrieve_async()
        finally:
            await http.close_async()

    balance = asyncio.run(retrieve(STRIPE_KEY))
    assert balance.object == "balance" and balance.livemode is False  # type: ignore[attr-defined]
    assert balance.pending[0].currency == "usd"  # type: ignore[attr-defined]
    with pytest.raises(stripe.AuthenticationError, match="Invalid API Key provided"):
        asyncio.run(retrieve("sk_test_unknown_key_1"))
