"""Configuration: a TOML file plus GATEPASS__SECTION__KEY environment overrides, read by
pydantic-settings (the environment wins over the file; values are read as TOML when they
parse, so `GATEPASS__TELEGRAM__ADMIN_IDS=[1,2]` is a list).

A provider whose section is absent is not offered. Any invalid or missing key stops start-up
with ConfigError, whose message is one line naming the key and what is wrong.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from storage.money import KNOWN_CURRENCIES

if TYPE_CHECKING:
    from billing.wallet import WalletRules

ENV_PREFIX = "GATEPASS__"
ENV_DELIMITER = "__"


class ConfigError(Exception):
    """A one-line, key-naming configuration problem."""


class KeyProblem(ValueError):
    """A model-level check that blames one key of its section (so the message can name
    `telegram.webhook_secret`, not just `telegram`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


# -- shared checks -------------------------------------------------------------------------

# Values in config.example.toml that must be replaced: a copy used unedited is refused with
# the key named, instead of failing later at Telegram or Stripe.
_PLACEHOLDER_MARKS = ("replace", "a-long-random-string")


def _is_placeholder(value: str) -> bool:
    low = value.lower()
    return any(mark in low for mark in _PLACEHOLDER_MARKS)


def _secret(v: SecretStr, what: str) -> SecretStr:
    raw = v.get_secret_value()
    if not raw.strip():
        raise ValueError("must not be empty")
    if _is_placeholder(raw):
        raise ValueError(f"is the placeholder from config.example.toml; put in {what}")
    return v


def _http_url(v: str) -> str:
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError(f"is not a URL: {v!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, not {v!r}")
    return v.rstrip("/")


# -- sections ------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


_DB_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")


class DatabaseConfig(_Section):
    url: str = "sqlite+aiosqlite:///gatepass.db"

    @field_validator("url")
    @classmethod
    def _async_driver(cls, v: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        if not v.startswith(tuple(f"{s}://" for s in _DB_SCHEMES)):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        try:
            url = make_url(v)
            url.port  # noqa: B018 - a port that is not a number fails here
        except (ArgumentError, ValueError) as e:
            raise ValueError(f"is not a valid database URL ({e})") from None
        if url.get_backend_name() == "sqlite":
            db = url.database or ""
            if (
                db in ("", ":memory:")
                or url.query.get("mode") == "memory"
                or db.startswith("file::memory:")
            ):
                raise ValueError(
                    "is an in-memory SQLite database, which loses everything "
                    "when gatepass stops; give a file, e.g. "
                    "sqlite+aiosqlite:///gatepass.db"
                )
        elif not url.host or not url.database:
            raise ValueError(
                "must name a host and a database: "
                "postgresql+asyncpg://user:password@host:5432/dbname"
            )
        return v


class WebConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8080"

    @field_validator("public_url")
    @classmethod
    def _http(cls, v: str) -> str:
        return _http_url(v)


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
    # Offer Telegram Stars (XTR) as a payment method: paid through this bot, nothing else to
    # configure. False hides it (an XTR price is then refused, as no method takes it).
    stars: bool = True

    @field_validator("token")
    @classmethod
    def _token_shape(cls, v: SecretStr) -> SecretStr:
        _secret(v, "the token @BotFather gave your bot")
        bot_id, _, secret = v.get_secret_value().partition(":")
        if not bot_id.isdigit() or not secret:
            raise ValueError("must look like 123456:ABC... (from @BotFather)")
        return v

    @field_validator("api_server")
    @classmethod
    def _api_url(cls, v: str) -> str:
        return _http_url(v)

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, v: SecretStr | None) -> SecretStr | None:
        return None if v is None else _secret(v, "a long random string of your own")

    @model_validator(mode="after")
    def _webhook_mode_needs_secret(self) -> TelegramConfig:
        # Caught here, by `config check`, rather than after the service is half started.
        if self.mode == "webhook" and self.webhook_secret is None:
            raise KeyProblem(
                "webhook_secret",
                'is required when mode = "webhook" (Telegram '
                "sends it with every update; without it anyone could post "
                "updates)",
            )
        return self


class StripeConfig(_Section):
    secret_key: SecretStr
    webhook_secret: SecretStr
    api_base: str = "https://api.stripe.com"

    @field_validator("secret_key")
    @classmethod
    def _key(cls, v: SecretStr) -> SecretStr:
        return _secret(v, "your Stripe secret key (Dashboard > Developers > API keys)")

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, v: SecretStr) -> SecretStr:
        return _secret(v, "the signing secret of your Stripe webhook endpoint (whsec_...)")

    @field_validator("api_base")
    @classmethod
    def _api_url(cls, v: str) -> str:
        return _http_url(v)


class SandboxPayConfig(_Section):
    """The local sandbox payment provider (demo and tests); never enable in production."""

    webhook_secret: SecretStr = SecretStr("sandbox-secret")

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, v: SecretStr) -> SecretStr:
        return _secret(v, "any string of your own")


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
    """The WeChat worker (`gatepass wechat`): a Wechaty puppet service at `endpoint`
    ("host:port", gRPC without TLS, as python-wechaty speaks it) and its `token`.

    WeChat publishes no sending limits; it restricts accounts that send like machines (many
    messages at once, the same text to many people). The budgets below are deliberately slow,
    one message every 2 s to a contact and 20 a minute overall, what the WeCom puppets' own
    guides advise: a delivery waiting a minute costs nothing, a restricted account costs the
    business."""

    endpoint: str
    token: SecretStr
    # Every message, room add and room removal of the process.
    send_per_minute: float = Field(20, gt=0, le=600)
    # Any call about one contact or one room (messages to it, adds and removals in it).
    per_chat_per_minute: float = Field(30, gt=0, le=600)
    # Messages into one room (its members all see them).
    per_room_per_minute: float = Field(10, gt=0, le=600)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        v = v.strip()
        host, sep, port = v.rpartition(":")
        if "://" in v or not sep or not host or "/" in v:
            raise ValueError(
                f'must be "host:port" of the puppet service, like 127.0.0.1:8788, not {v!r}'
            )
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"has no valid port (1-65535): {v!r}")
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: SecretStr) -> SecretStr:
        return _secret(v, "the token of your puppet service")


_WECHATPAY_ID = re.compile(r"[0-9A-Za-z_\-]{1,64}")


class WechatPayConfig(_Section):
    """WeChat Pay API v3 (Native, CNY), in public-key mode: the merchant's API private key
    signs our requests; the platform public key (named by its id) verifies WeChat Pay's
    answers and notifications; the APIv3 key decrypts notifications."""

    mchid: str
    appid: str
    apiv3_key: SecretStr
    private_key_path: Path
    cert_serial_no: str
    platform_public_key_path: Path
    platform_public_key_id: str
    api_base: str = "https://api.mch.weixin.qq.com"

    @field_validator("mchid")
    @classmethod
    def _mchid(cls, v: str) -> str:
        if not v.isascii() or not v.isdigit():
            raise ValueError("must be your WeChat Pay merchant number (digits)")
        return v

    @field_validator("appid", "cert_serial_no", "platform_public_key_id")
    @classmethod
    def _ids(cls, v: str) -> str:
        if _is_placeholder(v) or not _WECHATPAY_ID.fullmatch(v):
            raise ValueError("must be the id from the WeChat Pay merchant console")
        return v

    @field_validator("apiv3_key")
    @classmethod
    def _apiv3(cls, v: SecretStr) -> SecretStr:
        _secret(v, "the APIv3 key you set in the WeChat Pay merchant console")
        if len(v.get_secret_value().encode("utf-8")) != 32:
            raise ValueError("must be exactly 32 bytes (the APIv3 key of the merchant console)")
        return v

    @field_validator("private_key_path")
    @classmethod
    def _private_key(cls, v: Path) -> Path:
        from billing.providers.wechatpay_crypto import KeyFileError, read_private_key

        try:
            read_private_key(v)  # read as the provider will, once, at start-up
        except KeyFileError as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("platform_public_key_path")
    @classmethod
    def _public_key(cls, v: Path) -> Path:
        from billing.providers.wechatpay_crypto import KeyFileError, read_public_key

        try:
            read_public_key(v)
        except KeyFileError as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("api_base")
    @classmethod
    def _api_url(cls, v: str) -> str:
        return _http_url(v)


def _rsa_pem_file(path: Path, private: bool) -> None:
    """Raise ValueError (one line) unless `path` is a readable PEM RSA key of that kind."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_pem_public_key,
    )

    kind = "private" if private else "public"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror or e})") from None
    if b"-----BEGIN" not in data:
        raise ValueError(
            f"{path}: not a PEM file; a bare base64 key (as Alipay's console shows it) goes "
            f"between -----BEGIN {kind.upper()} KEY----- and -----END {kind.upper()} KEY----- lines"
        )
    try:
        key: object = (
            load_pem_private_key(data, password=None) if private else load_pem_public_key(data)
        )
    except (ValueError, TypeError):
        holds = b"PRIVATE KEY" if not private else b"PUBLIC KEY"
        hint = f" (it holds a {holds.decode().lower()})" if holds in data else ""
        raise ValueError(f"{path}: not a PEM RSA {kind} key{hint}") from None
    wanted = rsa.RSAPrivateKey if private else rsa.RSAPublicKey
    if not isinstance(key, wanted):
        raise ValueError(f"{path}: is a {type(key).__name__}, not an RSA {kind} key")


class AlipayConfig(_Section):
    app_id: str
    app_private_key_path: Path
    alipay_public_key_path: Path
    gateway: str = "https://openapi.alipay.com/gateway.do"

    @field_validator("app_id")
    @classmethod
    def _app_id(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        if _is_placeholder(v):
            raise ValueError("is the placeholder from config.example.toml; put in your APPID")
        return v.strip()

    @field_validator("app_private_key_path")
    @classmethod
    def _app_key(cls, v: Path) -> Path:
        _rsa_pem_file(v, private=True)
        return v

    @field_validator("alipay_public_key_path")
    @classmethod
    def _alipay_key(cls, v: Path) -> Path:
        _rsa_pem_file(v, private=False)
        return v

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, v: str) -> str:
        return _http_url(v)


class WalletConfig(_Section):
    """The wallet (issue 11): balances bought with top-ups, and points. The section is
    optional; without it the defaults below apply, and `enabled = false` turns the wallet
    off (no /wallet, no paying with it)."""

    enabled: bool = True
    # Points worth one MAJOR unit of a currency: {CNY = 10} makes 10 points = 1.00 CNY. A
    # currency not named here cannot be paid with points.
    points_per_unit: dict[str, int] = {"CNY": 10}
    # The fewest points one order may use.
    points_min: int = Field(10, ge=1, le=10**9)
    # The most of an order's price points may pay, in percent.
    points_cap_percent: int = Field(50, ge=0, le=100)
    # Points earned per major unit paid with money or balance (0: points are not earned).
    earn_points_per_unit: int = Field(1, ge=0, le=10**6)
    # Wrong PIN tries in a row before spending locks, and for how long.
    pin_max_tries: int = Field(5, ge=1, le=100)
    pin_lock_minutes: int = Field(15, ge=1, le=7 * 24 * 60)

    @field_validator("points_per_unit")
    @classmethod
    def _rates(cls, v: dict[str, int]) -> dict[str, int]:
        rates: dict[str, int] = {}
        for currency, points in v.items():
            code = currency.upper()
            if code not in KNOWN_CURRENCIES or code == "XTR":
                raise ValueError(f"{currency!r} is not a currency points can pay (like CNY)")
            if not 1 <= points <= 10**6:
                raise ValueError(f"{currency} = {points}: must be a whole number 1-1000000")
            rates[code] = points
        return rates

    def rules(self) -> WalletRules:
        from billing.wallet import WalletRules

        return WalletRules(
            points_per_unit=dict(self.points_per_unit),
            points_min=self.points_min,
            points_cap_percent=self.points_cap_percent,
            earn_points_per_unit=self.earn_points_per_unit,
            pin_max_tries=self.pin_max_tries,
            pin_lock_minutes=self.pin_lock_minutes,
        )


_REDIS_SCHEMES = ("redis", "rediss", "unix")


class RedisConfig(_Section):
    url: str

    @field_validator("url")
    @classmethod
    def _redis_url(cls, v: str) -> str:
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018
        except ValueError:
            raise ValueError(f"is not a URL: {v!r}") from None
        if parts.scheme not in _REDIS_SCHEMES or not (parts.hostname or parts.path):
            raise ValueError(f"must be a redis://, rediss:// or unix:// URL, not {v!r}")
        return v


# -- sources -------------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    """The file's tables, or ConfigError naming the path and the cause in one line."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; give the path of the .toml file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot read the config file (permission denied)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line});"
            " save the file as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


class _TomlFile(TomlConfigSettingsSource):
    """The file given by --config (pydantic-settings' TOML source, with one-line errors for
    a missing, unreadable or undecodable file instead of skipping it)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        if path is not None and not path.is_file():
            _read_toml(path)  # raises the reason it is not a readable file
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        return _read_toml(Path(file_path))


def _toml_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        raise ValueError(raw) from None


_TEXT_TYPES = (str, SecretStr, Path)


def _takes_text(field: FieldInfo | None) -> bool:
    ann = field.annotation if field is not None else None
    return ann in _TEXT_TYPES or any(a in _TEXT_TYPES for a in get_args(ann))


class _Environment(EnvSettingsSource):
    """GATEPASS__SECTION__KEY variables (from `environ`, default os.environ). Values are read
    as TOML when they parse: `[1, 2]` is a list, `"x"` the string x; a key that takes text
    keeps a bare value as written (a token `12345` stays a string)."""

    def __init__(
        self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None
    ) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        if self._environ is None:
            return super()._load_env_vars()
        return {k.lower(): v for k, v in self._environ.items()}

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return _toml_value(value)
        except ValueError:
            # Not TOML: pydantic's own message then names the key and the expected type.
            return value

    def _coerce_env_val_strict(self, field: FieldInfo | None, value: Any) -> Any:
        if isinstance(value, str):
            try:
                parsed = _toml_value(value)
            except ValueError:
                return value
            if isinstance(parsed, str) or not _takes_text(field):
                return parsed
        return value


def check_env_names(environ: Mapping[str, str]) -> None:
    """Every GATEPASS__ variable names a known section and one key (pydantic-settings would
    silently ignore a misspelt section)."""
    for name in environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"{name}: expected GATEPASS__SECTION__KEY")
        if parts[0] not in Settings.model_fields:
            raise ConfigError(f"{name}: there is no [{parts[0]}] section")


# -- the settings --------------------------------------------------------------------------


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
        case_sensitive=False,
        toml_file=None,
    )

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
    wallet: WalletConfig = WalletConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Settings(...) and Settings.model_validate(...) validate exactly what they are given
        # (the demo and the tests build theirs; an operator's GATEPASS__ variables must not
        # leak into them). load_settings reads the environment and the file.
        return (init_settings,)


SANDBOX_REFUSED = (
    "sandbox_pay: the sandbox provider is for gatepass demo and the tests only "
    "(anyone could 'pay' at /sandbox/pay/...); remove the [sandbox_pay] section"
)


def check_production(settings: Settings) -> None:
    """What `gatepass run` (and `config check`) refuse although the file is valid."""
    if settings.sandbox_pay is not None:
        raise ConfigError(SANDBOX_REFUSED)


def _one_line(err: ValidationError) -> str:
    errors = err.errors()
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    msg = first["msg"]
    problem = (first.get("ctx") or {}).get("error")
    if isinstance(problem, KeyProblem):
        loc.append(problem.key)
        msg = str(problem)
    elif first["type"] == "missing":
        msg = "is required"
    elif first["type"] == "extra_forbidden":
        msg = "is not a known key"
    elif first["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    key = ".".join(loc) or "config"
    more = len(errors) - 1
    return f"{key}: {msg}" + (
        f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    )


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (if any), apply environment overrides, validate."""
    env = dict(os.environ if environ is None else environ)
    check_env_names(env)
    try:
        # Earlier wins: the environment, then the file. No .env files or secret
        # directories: one file and the environment are the whole story.
        toml = _TomlFile(Settings, None if path is None else Path(path))
        sources = (_Environment(Settings, env), toml)
        return Settings(_build_sources=(sources, {}))
    except ValidationError as e:
        raise ConfigError(_one_line(e)) from None
    except SettingsError as e:
        raise ConfigError(str(e).splitlines()[0]) from None
