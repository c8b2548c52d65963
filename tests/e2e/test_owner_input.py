"""Issue 7, bad chat input from an owner, through the real service and the Bot API emulator:
one line naming the cause, then the usage (suggesting only currencies that can be paid here),
and nothing changes. Good input is echoed as the owner wrote it, and access without an end
reads naturally."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from storage.models import Plan, PlanGroup
from tests.e2e.conftest import start_world, stop_world
from tests.e2e.world import BUYER, GROUP, OWNER, World


@pytest.fixture
async def world(db_url: tuple[str, str | None]) -> AsyncIterator[World]:
    """Stripe and the sandbox only ([telegram] stars = false): XTR cannot be paid here."""
    w, emulator = await start_world(db_url, stars=False)
    try:
        yield w
    finally:
        await stop_world(w, emulator)


def _text(needle: str):
    return lambda m: needle in (m.text or "")


async def set_up_group(world: World) -> int:
    reply = await world.ask(OWNER, "/setup", chat=GROUP, match=_text("group #"))
    # The example in the reply uses prices this service can take (Stripe + sandbox: no Stars).
    assert "/addplan" in reply.text and "4.99USD" in reply.text and "XTR" not in reply.text
    return int((reply.text or "").split("group #")[1].split()[0].strip("(),"))


async def test_bad_addplan_input_says_why_in_one_line_and_changes_nothing(world: World):
    g = await set_up_group(world)
    for text, reason in [
        # each used to crash (IntegrityError, no reply) or misname the cause
        (f"/addplan {g},{g} 30d 4.99USD Monthly", f"Group {g} is named twice"),
        (f"/addplan {g},{GROUP} 30d 4.99USD Monthly", f"Group {g} is named twice"),
        (f"/addplan {g} 99999d 4.99USD Monthly", "'99999d' is too long"),
        (f"/addsub {g} 99999d 4.99USD Monthly", "'99999d' is too long"),
        (
            f"/addplan {g} 30d 250XTR Stars",
            "No payment method here accepts XTR; use one of: USD, EUR, GBP, CNY.",
        ),
        (f"/addplan {g} 30d 4.99USD 250XTR Both", "No payment method here accepts XTR"),
        (f"/addplan {g} 3x 4.99USD", "'3x' is not a duration"),
        (f"/addplan {g} 30d 4.99FOO", "'FOO' is not a supported currency"),
        (f"/addplan {g} 30d 1.5JPY", "JPY has 0 decimal places; '1.5' has more."),
        (f"/addplan {g} 30d Monthly", "'Monthly' is not a price like 4.99USD"),
    ]:
        reply = await world.ask(OWNER, text, match=_text("Usage:"))
        lines = reply.text.splitlines()
        assert len(lines) == 3 and reason in lines[0], (text, reply.text)
        command = text.split()[0]
        assert lines[1].startswith(f"Usage: {command} <group>"), reply.text
        # the usage suggests only what can be paid here: no Stars without a Stars provider
        assert "4.99USD 4.99EUR" in lines[2] and "XTR" not in lines[2], reply.text
        assert "currencies: USD, EUR, GBP, CNY" in lines[2], reply.text
    assert await world.count(Plan) == 0 and await world.count(PlanGroup) == 0


async def test_durations_are_echoed_as_written(world: World):
    g = await set_up_group(world)
    reply = await world.ask(OWNER, f"/addplan {g} 30d 4.99USD Monthly", match=_text("Plan #"))
    assert reply.text.startswith("Plan #1 added: Monthly, 30d, 4.99 USD, for "), reply.text
    reply = await world.ask(OWNER, f"/addsub {g} 1m 9.99USD Club", match=_text("Plan #"))
    assert reply.text.startswith("Plan #2 added: Club, 1m, renews automatically, 9.99 USD"), (
        reply.text
    )
    # No title: a readable default in the owner's language, not "1m access".
    reply = await world.ask(OWNER, f"/addplan {g} 365d 20USD", match=_text("Plan #"))
    assert reply.text.startswith("Plan #3 added: Access for 1 year, 365d, 20.00 USD"), reply.text
    listing = await world.ask(OWNER, "/plans", match=_text("plan #"))
    assert "plan #1: Monthly, 30 days, 4.99 USD" in listing.text
    assert "plan #2: Club, 30 days, renews automatically, 9.99 USD" in listing.text


async def test_lifetime_access_reads_naturally(world: World):
    g = await set_up_group(world)
    reply = await world.ask(OWNER, f"/grant @bob {g} lifetime", match=_text("has lifetime"))
    assert reply.text.startswith("@bob (2002) has lifetime access to Traders Club."), reply.text
    await world.wait_text(BUYER, "The owner of Traders Club gave you lifetime access.")
    invite = await world.wait_text(BUYER, "You have been given access to Traders Club")
    assert invite.text.endswith("Your access is for life."), invite.text
    my = await world.ask(BUYER, "/my", match=_text("Your access"))
    assert "• Traders Club: lifetime access" in my.text
    for text in (reply.text, invite.text, my.text):
        assert "until lifetime" not in text
