"""A verified, decrypted WeChat Pay notification is applied only when it names our merchant
(and, for a payment, our appid): one that names none is not known to be ours."""

from __future__ import annotations

import pytest

from billing.errors import MalformedEvent
from tests.unit.test_wechatpay_webhooks import (
    envelope,
    headers_for,
    provider,  # noqa: F401 - the fixture
    refund,
    transaction,
)


@pytest.mark.parametrize(
    ("event_type", "kind", "resource", "missing"),
    [
        ("TRANSACTION.SUCCESS", "transaction", transaction, "mchid"),
        ("TRANSACTION.SUCCESS", "transaction", transaction, "appid"),
        ("REFUND.SUCCESS", "refund", refund, "mchid"),
    ],
)
def test_a_notification_naming_no_merchant_or_app_is_not_applied(
    provider,  # noqa: F811
    event_type,
    kind,
    resource,
    missing,
):
    plain = resource()
    del plain[missing]
    body = envelope(event_type, plain, kind=kind)
    provider.verify_webhook(headers_for(body), body)  # WeChat Pay signed it
    with pytest.raises(MalformedEvent, match="names none"):
        provider.parse_event(body)
