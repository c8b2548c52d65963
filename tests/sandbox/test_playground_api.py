"""The playground page's JSON API on the emulator, without a browser (runs everywhere)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from sandbox.telegram.client import EmulatorClient
from sandbox.telegram.server import TelegramEmulator

TOKEN = "7000:pg-token"


@pytest.fixture
async def emu() -> AsyncIterator[tuple[TelegramEmulator, EmulatorClient, aiohttp.ClientSession]]:
    emulator = TelegramEmulator()
    url = await emulator.start()
    tg = EmulatorClient(url)
    await tg.create_bot(TOKEN)
    await tg.create_user(101, "Olga", language_code="en")
    await tg.create_chat(-100777, creator_id=101, title="Club")
    await tg.promote(-100777, 7000, {"can_invite_users": True}, by=101)
    async with aiohttp.ClientSession(url) as http:
        yield emulator, tg, http
    await tg.close()
    await emulator.stop()


async def call(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, path, json=body) as r:
        return r.status, await r.json()


async def test_the_page_and_its_files_are_served(emu) -> None:
    _, _, http = emu
    for path, kind in (
        ("/playground", "text/html"),
        ("/playground/static/playground.js", "text/javascript"),
        ("/playground/static/playground.css", "text/css"),
    ):
        async with http.get(path) as r:
            assert r.status == 200 and r.content_type == kind
            assert "http://" not in (await r.text()).replace("http://127.0.0.1", "")
    async with http.get("/playground/static/secrets.txt") as r:
        assert r.status == 404


async def test_state_lists_a_users_chats_and_who_they_are(emu) -> None:
    _, _tg, http = emu
    status, state = await call(http, "GET", "/playground/api/state?user_id=101")
    assert status == 200
    assert state["users"] == [
        {"id": 101, "name": "Olga", "language_code": "en", "about": "owns Club"}
    ]
    assert [(c["id"], c["kind"], c["status"]) for c in state["chats"]] == [
        (101, "bot", "member"),
        (-100777, "group", "creator"),
    ]
    status, body = await call(http, "GET", "/playground/api/state?user_id=999")
    assert status == 404 and body["error"] == "no user 999"


async def test_added_users_get_fresh_ids_and_bad_names_are_refused(emu) -> None:
    _, _, http = emu
    status, first = await call(
        http, "POST", "/playground/api/users", {"first_name": "Chen", "language_code": "zh-hans"}
    )
    assert status == 200 and first["id"] == 1001 and first["language_code"] == "zh-hans"
    _, second = await call(http, "POST", "/playground/api/users", {"first_name": "Dan"})
    assert second["id"] == 1002 and second["language_code"] == "en"
    status, body = await call(http, "POST", "/playground/api/users", {"first_name": " "})
    assert status == 400 and "first_name" in body["error"]


async def test_new_group_has_the_bot_as_admin_and_invites_preview(emu) -> None:
    _, tg, http = emu
    status, chat = await call(
        http, "POST", "/playground/api/groups", {"title": "Second", "creator_id": 101}
    )
    assert status == 200 and chat["id"] < -1001000000000
    member = (await tg.chat_member(chat["id"], 7000))["member"]
    assert member["can_invite_users"] and member["can_restrict_members"]
    link = await tg.create_invite_link(-100777, 101, creates_join_request=True)
    query = urlencode({"link": link["invite_link"]})  # a "+" in a query string is a space
    _, offer = await call(http, "GET", f"/playground/api/invite?{query}")
    assert offer == {"offer": "request", "title": "Club", "chat_id": -100777}
    _, offer = await call(http, "GET", "/playground/api/invite?link=https://t.me/+nope")
    assert offer["offer"] == "invalid"


async def test_a_private_chat_is_seen_only_by_its_user(emu) -> None:
    _, tg, http = emu
    await tg.create_user(202, "Bob")
    await tg.send_text(101, "/start")
    status, view = await call(http, "GET", "/playground/api/chats/101?user_id=101")
    assert status == 200 and [m["text"] for m in view["messages"]] == ["/start"]
    assert view["messages"][0]["mine"] is True
    status, _ = await call(http, "GET", "/playground/api/chats/101?user_id=202")
    assert status == 403
    _, group = await call(http, "GET", "/playground/api/chats/-100777?user_id=202")
    assert group["chat"]["status"] == "left" and group["messages"] == []


async def test_the_clock_moves_forward_only_and_calls_the_wiring(emu) -> None:
    emulator, _, http = emu
    moved: list[float] = []

    async def advance(seconds: float) -> dict[str, Any]:
        moved.append(seconds)
        return {"reminded": 0, "removed": 0}

    emulator.playground.advance = advance
    status, body = await call(http, "POST", "/playground/api/clock", {"days": 1, "hours": 2})
    assert status == 200 and body["offset_seconds"] == 93600
    assert body["service"] == {"reminded": 0, "removed": 0} and moved == [93600]
    for bad in ({"days": -1}, {}, {"days": "x"}):
        status, body = await call(http, "POST", "/playground/api/clock", bad)
        assert status == 400, bad
    assert moved == [93600]
