"""`gatepass config check --online`: prove the outside the config points at, one line per
check. The database is reachable and at the newest schema, the Bot API answers getMe with
the token, each configured provider accepts its key, Redis answers PING, the WeChat puppet
service answers and takes its token.

Nothing is changed anywhere: no migration, no SQLite file created, no webhook set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.engine import make_url

from gatepass.config import Settings
from gatepass.startup import (
    TOKEN_REFUSED,
    StartupError,
    check_sqlite_folder,
    database_problem,
    unreachable,
    where,
)

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Check:
    ok: bool
    line: str  # "database: ..." naming the key to fix when it failed


def _ok(line: str) -> Check:
    return Check(True, line)


def _failed(line: str) -> Check:
    return Check(False, line)


async def check_database(url: str) -> Check:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from storage.db import Database
    from storage.migrate import alembic_config

    try:
        check_sqlite_folder(url)
    except StartupError as e:
        return _failed(str(e))
    u = make_url(url)
    # One stat() at start-up, before anything else runs: blocking the loop here costs nothing.
    if u.get_backend_name() == "sqlite" and not Path(u.database or "").exists():  # noqa: ASYNC240
        # Opening it would create it: say so instead.
        return _failed(
            f"database: the {where(url)} does not exist yet; `gatepass db upgrade` creates it"
        )
    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    db: Database | None = None
    try:
        db = Database(url)
        async with db.engine.connect() as conn:
            current = set(
                await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_heads())
            )
    except Exception as e:  # noqa: BLE001 - each failure is reported as a line
        return _failed(database_problem(url, e) or f"database: {e.__class__.__name__}: {e}")
    finally:
        if db is not None:
            await db.dispose()
    if not current:
        return _failed(
            f"database: {where(url)} has no gatepass schema yet; run `gatepass db upgrade`"
        )
    if current != heads:
        return _failed(
            f"database: {where(url)} is at revision {', '.join(sorted(current))}, "
            f"the newest is {', '.join(sorted(heads))}; run `gatepass db upgrade`"
        )
    return _ok(
        f"database: {where(url)} answers, schema at the newest revision "
        f"({', '.join(sorted(heads))})"
    )


async def _get_json(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with http.get(url, headers=headers) as r:
        try:
            body = await r.json(content_type=None)
        except ValueError:
            body = None
        return r.status, body


async def check_telegram(http: aiohttp.ClientSession, api_server: str, token: str) -> Check:
    try:
        status, body = await _get_json(http, f"{api_server.rstrip('/')}/bot{token}/getMe")
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return _failed(unreachable(api_server, str(e) or e.__class__.__name__))
    if status == 401:
        return _failed(TOKEN_REFUSED)
    if status != 200 or not isinstance(body, dict) or not body.get("ok"):
        what = body.get("description") if isinstance(body, dict) else None
        return _failed(
            f"telegram: getMe answered {status}{f': {what}' if what else ''} at {api_server}"
        )
    me = body.get("result") or {}
    return _ok(f"telegram: getMe answers: the bot is @{me.get('username')} (id {me.get('id')})")


async def check_stripe(http: aiohttp.ClientSession, api_base: str, secret_key: str) -> Check:
    """GET /v1/balance: the cheapest call that needs a valid secret key."""
    try:
        status, body = await _get_json(
            http, f"{api_base.rstrip('/')}/v1/balance", {"Authorization": f"Bearer {secret_key}"}
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        return _failed(f"stripe.api_base: cannot reach {api_base} ({e or e.__class__.__name__})")
    message = ((body or {}).get("error") or {}).get("message") if isinstance(body, dict) else None
    if status == 401:
        return _failed(f"stripe.secret_key: Stripe refused the key (401: {message})")
    if status != 200:
        return _failed(f"stripe: {api_base} answered {status}{f': {message}' if message else ''}")
    mode = "live" if isinstance(body, dict) and body.get("livemode") else "test"
    return _ok(f"stripe: the secret key is accepted ({mode} mode)")


async def check_wechatpay(settings: Settings) -> Check:
    """Query an order number nobody uses (no payment, nothing created): WeChat Pay answers
    ORDER_NOT_EXIST only to a request signed with the merchant's key, and signs that answer
    with the platform key, which the provider verifies."""
    from billing.errors import PaymentError, PaymentRefused
    from gatepass.providers import wechatpay_provider

    provider = wechatpay_provider(settings)
    wx = settings.wechatpay
    assert wx is not None
    try:
        line = await provider.check_keys()
    except PaymentRefused as e:
        if "SIGN_ERROR" in str(e):
            return _failed(
                f"wechatpay.private_key_path: WeChat Pay refused our signature ({e}); check "
                "mchid, cert_serial_no and the merchant API private key"
            )
        return _failed(f"wechatpay: {e}")
    except PaymentError as e:
        if "signature does not verify" in str(e):
            return _failed(
                "wechatpay.platform_public_key_path: WeChat Pay's answer does not verify with "
                "this platform public key (or platform_public_key_id)"
            )
        if "cannot reach" in str(e):
            return _failed(f"wechatpay.api_base: {e}")
        return _failed(f"wechatpay: {e}")
    finally:
        await provider.close()
    return _ok(f"wechatpay: {line} (mchid {wx.mchid})")


async def check_alipay(settings: Settings) -> Check:
    """alipay.trade.query of an order that does not exist: a signed ACQ.TRADE_NOT_EXIST
    proves Alipay took our app key and we verify its key, and moves no money."""
    from billing.errors import PaymentError
    from gatepass.providers import alipay_provider

    provider = alipay_provider(settings)
    try:
        return _ok(await provider.check_keys())
    except PaymentError as e:
        said = str(e).removeprefix("alipay ")
        return _failed(f"alipay: {said} (check app_id, the two key files and gateway)")
    finally:
        await provider.close()


def _redis_where(url: str) -> str:
    """host:port/db without the password (or the socket path)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}{parts.path}"


async def check_redis(url: str) -> Check:
    from redis.asyncio import from_url
    from redis.exceptions import RedisError

    client = from_url(url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS)
    try:
        await client.ping()
    except (RedisError, OSError) as e:
        return _failed(f"redis.url: {_redis_where(url)} does not answer PING ({e})")
    finally:
        await client.aclose()
    return _ok(f"redis: {_redis_where(url)} answers PING")


async def check_wechat(endpoint: str, token: str) -> Check:
    """The puppet service answers at [wechat] endpoint and takes the token. Read-only: it
    does not start the puppet, so it is safe beside a running `gatepass wechat`."""
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError

    from bot.wechat.compat import probe

    try:
        version = await asyncio.wait_for(probe(endpoint, token), TIMEOUT_SECONDS)
    except GRPCError as e:
        if e.status in (Status.UNAUTHENTICATED, Status.PERMISSION_DENIED):
            return _failed(f"wechat.token: the puppet service at {endpoint} refuses it")
        return _failed(f"wechat: the puppet service at {endpoint} answered {e.status.name}")
    except (OSError, TimeoutError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        return _failed(f"wechat.endpoint: no puppet service answers at {endpoint} ({why})")
    return _ok(f"wechat: the puppet service at {endpoint} answers (version {version})")


async def _bounded(name: str, check: Awaitable[Check]) -> Check:
    try:
        return await asyncio.wait_for(check, TIMEOUT_SECONDS + 5)
    except TimeoutError:
        return _failed(f"{name}: no answer within {TIMEOUT_SECONDS + 5:.0f} s")


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, concurrently; results in a fixed order."""
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        checks: list[Awaitable[Check]] = [
            _bounded("database", check_database(settings.database.url))
        ]
        if settings.telegram is not None:
            checks.append(
                _bounded(
                    "telegram",
                    check_telegram(
                        http,
                        settings.telegram.api_server,
                        settings.telegram.token.get_secret_value(),
                    ),
                )
            )
        if settings.stripe is not None:
            checks.append(
                _bounded(
                    "stripe",
                    check_stripe(
                        http,
                        settings.stripe.api_base,
                        settings.stripe.secret_key.get_secret_value(),
                    ),
                )
            )
        if settings.wechatpay is not None:
            checks.append(_bounded("wechatpay", check_wechatpay(settings)))
        if settings.alipay is not None:
            checks.append(_bounded("alipay", check_alipay(settings)))
        if settings.redis is not None:
            checks.append(_bounded("redis", check_redis(settings.redis.url)))
        if settings.wechat is not None:
            wx = settings.wechat
            checks.append(
                _bounded("wechat", check_wechat(wx.endpoint, wx.token.get_secret_value()))
            )
        return list(await asyncio.gather(*checks))
