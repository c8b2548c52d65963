"""Fixtures shared by the unit tests of the Stripe-backed rules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from billing.providers.stripe_provider import StripeProvider
from sandbox.stripe_host import FakeStripe
from tests.factories import MovableClock
from tests.stripe_fixtures import SECRET_KEY, WEBHOOK_SECRET


@pytest.fixture
async def fake(now) -> AsyncIterator[FakeStripe]:
    """The local Stripe API host on the test's clock. No webhook_url: every webhook it would
    send is lost, as when Stripe cannot reach us."""
    host = FakeStripe(SECRET_KEY, WEBHOOK_SECRET, clock=MovableClock(now))
    await host.start()
    yield host
    await host.stop()


@pytest.fixture
async def stripe(fake: FakeStripe) -> AsyncIterator[StripeProvider]:
    p = StripeProvider(SECRET_KEY, WEBHOOK_SECRET, api_base=fake.base_url)
    yield p
    await p.close()
