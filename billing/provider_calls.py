"""Provider calls the outbox makes after a commit (like the chat calls in
membership/delivery.py, but to a payment provider): retried until they land.

`stop_renewal`: a refund or dispute ended (or will not renew) access that a subscription
pays for; the provider must stop charging for it too, or the buyer is charged next period
for access they no longer have.
"""
from __future__ import annotations

from typing import Any

from billing.errors import PaymentError, PaymentRefused
from billing.provider import SubscriptionCanceller
from membership.delivery import DeliveryContext, Handler
from membership.gateway import RejectedError, TransientError


async def stop_renewal(ctx: DeliveryContext, payload: dict[str, Any]) -> None:
    provider = ctx.providers.get(payload["provider"])
    if not isinstance(provider, SubscriptionCanceller):
        raise RejectedError(f"provider {payload['provider']} is not configured to stop "
                            f"subscription {payload['subscription_id']}")
    try:
        await provider.cancel_subscription_at_period_end(payload["subscription_id"])
    except PaymentRefused as e:
        raise RejectedError(str(e)) from e
    except PaymentError as e:
        raise TransientError(str(e)) from e


# Kinds whose rows carry the provider's name as their platform and need no chat gateway.
HANDLERS: dict[str, Handler] = {"stop_renewal": stop_renewal}
