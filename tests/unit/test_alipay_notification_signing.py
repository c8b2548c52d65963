"""The local gateway signs a notification the way Alipay's verification rule reads it: every
field but sign and sign_type, an empty one included. (It used to leave empty fields out, as
request signing does, so a notification carrying one, e.g. an empty `body` or
`passback_params`, failed our verification: the double disagreed with the protocol.)"""

from __future__ import annotations

from billing.ingest import read_notice
from tests.unit.test_alipay_provider import Pair, paid_fields, pair  # noqa: F401 - the fixture


async def test_a_notification_with_an_empty_field_verifies(pair: Pair):  # noqa: F811
    n = pair.host.notify(
        paid_fields(pair.host, body="", passback_params=""), url="http://127.0.0.1:9/"
    )
    pair.provider.verify_webhook({}, n.body)
    notice = read_notice(pair.provider, n.body)
    assert notice.event is not None and notice.event.amount_minor == 990
