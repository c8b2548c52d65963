"""Attacks on the Telegram surface of issue 8 (Stars, /refund, channels, /starlink,
/broadcast) that once went wrong, played as Telegram users through the emulator."""

from __future__ import annotations

from storage.models import StarLink
from tests.e2e.world import OWNER, World

LONG = "x" * 4200  # a reply echoing it whole would pass Telegram's 4096 characters


async def test_a_very_long_bad_argument_still_gets_its_one_line_reason(world: World):
    reply = await world.ask(
        OWNER, f"/refund GP7K2M9QXA4B {LONG}", match=lambda m: "Usage" in (m.text or "")
    )
    assert "/refund" in (reply.text or "") and len(reply.text or "") < 1000
    reply = await world.ask(
        OWNER, f"/starlink 1 {LONG}XTR", match=lambda m: "Usage" in (m.text or "")
    )
    assert "Stars" in (reply.text or "") and len(reply.text or "") < 1000
    reply = await world.ask(OWNER, f"/setup @{LONG}", match=lambda m: "@" in (m.text or ""))
    assert len(reply.text or "") < 1000
    assert await world.count(StarLink) == 0
