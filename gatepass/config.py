"""Configuration: a TOML file plus GATEPASS__SECTION__KEY environment overrides.

A provider whose section is absent is not offered. Any invalid or missing key stops start-up
with ConfigError, whose message is one line naming the key and what is wrong.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

ENV_PREFIX = "GATEPASS__"


class ConfigError(Exception):
    """A one-line, key-naming configuration problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseConfig(_Section):
    url: str = "sqlite+aiosqlite:///gatepass.db"

    @field_validator("url")
    @classmethod
    def _async_driver(cls, v: str) -> str:
        if not (v.startswith("sqlite+aiosqlite://") or v.startswith("postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return v


class WebConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8080"

    @field_validator("public_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")


class TelegramConfig(_Section):
    token: SecretStr
    api_server: str = "https://api.telegram.org"
    admin_ids: list[int] = []
    mode: Literal["polling", "webhook"] = "polling"
    webhook_secret: SecretStr | None = None
    # How long a single-use invite link stays valid.
    invite_ttl_hours: int = Field(24, ge=1, le=24 * 30)
    # The process's budget for the Bot API calls of the outbox, kept under Telegram's
    # published limits: 30 calls/s overall, about 1/s per chat, 20 messages/min in a group.
    rate_global_per_second: float = Field(25, gt=0, le=1000)
    # Any call about one chat: messages to a user; a group's invite links, joins, bans.
    rate_per_chat_per_minute: float = Field(50, gt=0, le=6000)
    # Messages into one group or channel.
    rate_per_group_per_minute: float = Field(20, gt=0, le=6000)

    @field_validator("token")
    @classmethod
    def _token_shape(cls, v: SecretStr) -> SecretStr:
        bot_id, _, secret = v.get_secret_value().partition(":")
        if not bot_id.isdigit() or not secret:
            raise ValueError("must look like 123456:ABC... (from @BotFather)")
        return v


class StripeConfig(_Section):
    secret_key: SecretStr
    webhook_secret: SecretStr
    api_base: str = "https://api.stripe.com"


class SandboxPayConfig(_Section):
    """The local sandbox payment provider (demo and tests); never enable in production."""

    webhook_secret: SecretStr = SecretStr("sandbox-secret")


class SchedulerConfig(_Section):
    interval_seconds: float = Field(30, gt=0)
    reminder_days: int = Field(3, ge=0)
    grace_hours: int = Field(24, ge=0)
    outbox_interval_seconds: float = Field(0.5, gt=0)
    order_timeout_minutes: int = Field(60, ge=1)
    # Reconciliation: a pending order this old is re-checked with its provider (a webhook
    # should have come by then), at most reconcile_batch orders per sweep.
    reconcile_after_minutes: int = Field(5, ge=1)
    reconcile_batch: int = Field(100, ge=1, le=10000)
    # Rows a sweep claims per transaction, and outbox rows delivered at the same time.
    batch_size: int = Field(500, ge=1, le=10000)
    outbox_concurrency: int = Field(100, ge=1, le=10000)


class WebhooksConfig(_Section):
    # Verified webhook bodies are kept this long (for `gatepass webhooks replay`), then
    # dropped by the scheduler; the event's record itself stays.
    keep_raw_days: int = Field(30, ge=1, le=3650)


class WechatConfig(_Section):
    endpoint: str
    token: SecretStr


class WechatPayConfig(_Section):
    mchid: str
    appid: str
    apiv3_key: SecretStr
    private_key_path: Path
    cert_serial_no: str
    platform_public_key_path: Path
    platform_public_key_id: str
    api_base: str = "https://api.mch.weixin.qq.com"


class AlipayConfig(_Section):
    app_id: str
    app_private_key_path: Path
    alipay_public_key_path: Path
    gateway: str = "https://openapi.alipay.com/gateway.do"


class RedisConfig(_Section):
    url: str


class Settings(_Section):
    database: DatabaseConfig = DatabaseConfig()
    web: WebConfig = WebConfig()
    telegram: TelegramConfig | None = None
    stripe: StripeConfig | None = None
    sandbox_pay: SandboxPayConfig | None = None
    scheduler: SchedulerConfig = SchedulerConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    wechat: WechatConfig | None = None
    wechatpay: WechatPayConfig | None = None
    alipay: AlipayConfig | None = None
    redis: RedisConfig | None = None


# Sections DESIGN.md reserves whose integrations have not landed: refusing them beats
# silently offering nothing for a section the operator filled in.
_NOT_YET = ("wechat", "wechatpay", "alipay")


SANDBOX_REFUSED = ("sandbox_pay: the sandbox provider is for gatepass demo and the tests only "
                   "(anyone could 'pay' at /sandbox/pay/...); remove the [sandbox_pay] section")


def check_production(settings: Settings) -> None:
    """What `gatepass run` (and `config check`) refuse although the file is valid."""
    if settings.sandbox_pay is not None:
        raise ConfigError(SANDBOX_REFUSED)


def _env_overrides(environ: dict[str, str]) -> dict[str, dict[str, Any]]:
    """GATEPASS__STRIPE__SECRET_KEY=... -> {"stripe": {"secret_key": "..."}}.

    Values are parsed as TOML values when they parse (numbers, booleans, arrays), else kept
    as strings, so `GATEPASS__TELEGRAM__ADMIN_IDS=[1,2]` works.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"{name}: expected GATEPASS__SECTION__KEY")
        section, key = parts
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out.setdefault(section, {})[key] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in over.items():
        current = merged.get(section)
        if current is not None and not isinstance(current, dict):
            raise ConfigError(f"{section}: must be a [section] table")
        merged[section] = {**(current or {}), **values}
    return merged


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "config"
    msg = first["msg"]
    if first["type"] == "missing":
        msg = "is required"
    elif first["type"] == "extra_forbidden":
        msg = "is not a known key"
    more = len(err.errors()) - 1
    return f"{key}: {msg}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the TOML file (if any), apply environment overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML ({e})") from None
    data = _merge(data, _env_overrides(dict(os.environ if environ is None else environ)))
    for section in _NOT_YET:
        if section in data:
            raise ConfigError(f"{section}: not available in this version yet "
                              "(offered now: stripe)")
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_one_line(e)) from None
