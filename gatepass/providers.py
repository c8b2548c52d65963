"""Which payment providers this deployment offers: one per configured section."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiogram import Bot

from billing.errors import PaymentError
from billing.provider import PaymentProvider
from billing.providers.sandbox_provider import SandboxProvider
from gatepass.config import ConfigError, Settings

if TYPE_CHECKING:
    from billing.providers.alipay_provider import AlipayProvider
    from billing.providers.wechatpay_provider import WechatPayProvider


def build_providers(settings: Settings) -> dict[str, PaymentProvider]:
    providers: dict[str, PaymentProvider] = {}
    if settings.stripe is not None:
        from billing.providers.stripe_provider import StripeProvider

        providers["stripe"] = StripeProvider(
            settings.stripe.secret_key.get_secret_value(),
            settings.stripe.webhook_secret.get_secret_value(),
            api_base=settings.stripe.api_base,
        )
    if settings.wechatpay is not None:
        providers["wechatpay"] = wechatpay_provider(settings)
    if settings.alipay is not None:
        providers["alipay"] = alipay_provider(settings)
    if settings.sandbox_pay is not None:
        providers["sandbox"] = SandboxProvider(
            settings.sandbox_pay.webhook_secret.get_secret_value(), settings.web.public_url
        )
    return providers


def wechatpay_provider(settings: Settings) -> WechatPayProvider:
    """The [wechatpay] section's provider; its key files were checked when the config was
    read, and are read again here (ConfigError, one line, if they changed since)."""
    from billing.providers.wechatpay_crypto import KeyFileError
    from billing.providers.wechatpay_provider import WechatPayProvider

    wx = settings.wechatpay
    assert wx is not None
    try:
        return WechatPayProvider(
            mchid=wx.mchid,
            appid=wx.appid,
            apiv3_key=wx.apiv3_key.get_secret_value(),
            private_key_path=wx.private_key_path,
            cert_serial_no=wx.cert_serial_no,
            platform_public_key_path=wx.platform_public_key_path,
            platform_public_key_id=wx.platform_public_key_id,
            public_url=settings.web.public_url,  # notify_url: {public_url}/webhooks/wechatpay
            api_base=wx.api_base,
        )
    except KeyFileError as e:
        raise ConfigError(f"wechatpay: {e}") from None


def alipay_provider(settings: Settings) -> AlipayProvider:
    from billing.providers.alipay_provider import AlipayProvider

    a = settings.alipay
    if a is None:
        raise ValueError("no [alipay] section")
    # The key files were checked when the config was read; read once, at start-up. A key
    # the SDK still cannot use is a config error (one line), not a traceback.
    try:
        return AlipayProvider(
            a.app_id,
            a.app_private_key_path.read_text("utf-8"),
            a.alipay_public_key_path.read_text("utf-8"),
            a.gateway,
            settings.web.public_url,
        )
    except (PaymentError, OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"alipay: {e}") from None


def telegram_providers(bot: Bot) -> dict[str, PaymentProvider]:
    """Providers paid through the bot itself: Telegram Stars, offered whenever Telegram is
    configured (no token or account of their own)."""
    from billing.providers.stars_provider import StarsProvider
    from bot.stars_api import AiogramStarsApi

    return {"stars": StarsProvider(AiogramStarsApi(bot))}
