"""Which payment providers this deployment offers: one per configured section."""

from __future__ import annotations

from billing.provider import PaymentProvider
from billing.providers.sandbox_provider import SandboxProvider
from gatepass.config import Settings


def build_providers(settings: Settings) -> dict[str, PaymentProvider]:
    providers: dict[str, PaymentProvider] = {}
    if settings.stripe is not None:
        from billing.providers.stripe_provider import StripeProvider

        providers["stripe"] = StripeProvider(
            settings.stripe.secret_key.get_secret_value(),
            settings.stripe.webhook_secret.get_secret_value(),
            api_base=settings.stripe.api_base,
        )
    if settings.sandbox_pay is not None:
        providers["sandbox"] = SandboxProvider(
            settings.sandbox_pay.webhook_secret.get_secret_value(), settings.web.public_url
        )
    return providers
