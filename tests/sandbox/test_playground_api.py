"""The playground page's JSON API on the emulator, without a browser (runs everywhere)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import BufferedInputFile, LabeledPrice

from billing.qr_image import qr_png
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


# -- paying: invoice messages and Telegram Stars invoice links (playground_pay.py) -----------

UPDATES = ["message", "pre_checkout_query"]


@pytest.fixture
async def bot(emu) -> AsyncIterator[Bot]:
    emulator, tg, _ = emu
    b = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(emulator.base_url)))
    await tg.send_text(101, "/start")
    await b.get_updates(offset=-1, timeout=0)  # the /start read: only what follows is new
    yield b
    await b.session.close()


async def answering(bot: Bot, ok: bool, error_message: str | None = None) -> asyncio.Task[None]:
    """The bot's side: answer the next pre_checkout_query as told."""

    async def answer() -> None:
        offset = None
        while True:
            for u in await bot.get_updates(offset=offset, timeout=1, allowed_updates=UPDATES):
                offset = u.update_id + 1
                if u.pre_checkout_query:
                    await bot.answer_pre_checkout_query(
                        u.pre_checkout_query.id, ok=ok, error_message=error_message
                    )
                    return

    return asyncio.create_task(answer())


async def stars_invoice(bot: Bot) -> int:
    sent = await bot.send_invoice(
        101,
        title="Club",
        description="Monthly access",
        payload="GP1",
        currency="XTR",
        prices=[LabeledPrice(label="Month", amount=250)],
        provider_token="",
    )
    return sent.message_id


async def test_an_invoice_shows_its_price_and_is_paid_from_the_page(emu, bot: Bot) -> None:
    _, _, http = emu
    message_id = await stars_invoice(bot)
    _, view = await call(http, "GET", "/playground/api/chats/101?user_id=101")
    (shown,) = [m for m in view["messages"] if m["id"] == message_id]
    assert shown["invoice"] == {
        "title": "Club",
        "description": "Monthly access",
        "currency": "XTR",
        "total_amount": 250,
        "paid": False,
    }
    answer = await answering(bot, ok=True)
    status, paid = await call(
        http,
        "POST",
        "/playground/api/invoices/pay",
        {"user_id": 101, "chat_id": 101, "message_id": message_id},
    )
    await asyncio.wait_for(answer, 5)
    assert status == 200 and paid["status"] == "paid"
    assert paid["telegram_payment_charge_id"].startswith("stxt")
    _, view = await call(http, "GET", "/playground/api/chats/101?user_id=101")
    (shown,) = [m for m in view["messages"] if m["id"] == message_id]
    assert shown["invoice"]["paid"] is True
    assert view["messages"][-1]["service"] == "Olga paid 250 ⭐"


async def test_the_bots_refusal_comes_back_to_the_page(emu, bot: Bot) -> None:
    _, tg, http = emu
    message_id = await stars_invoice(bot)
    answer = await answering(bot, ok=False, error_message="This order expired.")
    status, refused = await call(
        http,
        "POST",
        "/playground/api/invoices/pay",
        {"user_id": "101", "chat_id": "101", "message_id": str(message_id)},
    )
    await asyncio.wait_for(answer, 5)
    assert status == 200
    assert (refused["status"], refused["error_message"]) == ("declined", "This order expired.")
    assert await tg.payments() == []


async def test_an_invoice_link_is_described_then_paid(emu, bot: Bot) -> None:
    _, tg, http = emu
    url = await bot.create_invoice_link(
        title="Club",
        description="Stars monthly",
        payload="GP2",
        currency="XTR",
        prices=[LabeledPrice(label="Month", amount=250)],
        provider_token="",
        subscription_period=2592000,
    )
    status, sheet = await call(
        http, "GET", f"/playground/api/invoice_link?{urlencode({'link': url})}"
    )
    assert status == 200 and sheet == {
        "title": "Club",
        "description": "Stars monthly",
        "currency": "XTR",
        "total_amount": 250,
        "subscription_period": 2592000,
    }
    answer = await answering(bot, ok=True)
    status, paid = await call(
        http, "POST", "/playground/api/invoice_link/pay", {"user_id": 101, "link": url}
    )
    await asyncio.wait_for(answer, 5)
    assert status == 200 and paid["status"] == "paid" and paid["is_first_recurring"] is True
    (sub,) = await tg.star_subscriptions()
    assert (sub["user_id"], sub["total_amount"]) == (101, 250)


async def test_paying_with_bad_input_is_a_400_and_pays_nothing(emu, bot: Bot) -> None:
    _, tg, http = emu
    message_id = await stars_invoice(bot)
    good = {"user_id": 101, "chat_id": 101, "message_id": message_id}
    for bad, status_wanted, says in (
        ({**good, "user_id": "bob"}, 400, "user_id must be an integer"),
        ({**good, "user_id": True}, 400, "user_id must be an integer"),
        ({**good, "chat_id": None}, 400, "chat_id must be an integer"),
        ({**good, "message_id": "1.5"}, 400, "message_id must be an integer"),
        ({**good, "user_id": 999}, 404, "no user 999"),
        ({**good, "message_id": message_id - 1}, 404, "no invoice message"),  # /start, no invoice
        ({**good, "chat_id": -100777, "user_id": 101, "message_id": 1}, 404, "no invoice"),
    ):
        status, body = await call(http, "POST", "/playground/api/invoices/pay", bad)
        assert (status, says in body["error"]) == (status_wanted, True), (bad, body)
    await tg.create_user(202, "Bob")
    status, body = await call(
        http, "POST", "/playground/api/invoices/pay", {**good, "user_id": 202, "chat_id": -100777}
    )
    assert (status, body["error"]) == (403, "user 202 is not a member of chat -100777")
    status, body = await call(
        http, "POST", "/playground/api/invoices/pay", {**good, "user_id": 202}
    )
    assert status == 403  # Olga's private chat: Bob cannot see, let alone pay, her invoice
    async with http.post("/playground/api/invoices/pay", data="not json") as r:
        assert r.status == 400 and (await r.json())["error"] == "body must be JSON"
    status, body = await call(http, "POST", "/playground/api/invoices/pay", [1, 2])
    assert (status, body["error"]) == (400, "body must be a JSON object")

    for link, status_wanted in (
        ("", 400),
        ("https://t.me/+invite", 400),
        ("https://t.me/$has space", 400),
        ("https://example.com/$abc", 400),
        ("https://t.me/$unknown", 404),
    ):
        status, body = await call(
            http, "GET", f"/playground/api/invoice_link?{urlencode({'link': link})}"
        )
        assert status == status_wanted, (link, body)
        assert "\n" not in body["error"]
        status, body = await call(
            http, "POST", "/playground/api/invoice_link/pay", {"user_id": 101, "link": link}
        )
        assert status == status_wanted, (link, body)
    status, body = await call(
        http,
        "POST",
        "/playground/api/invoice_link/pay",
        {"user_id": "x", "link": "https://t.me/$a"},
    )
    assert (status, body["error"]) == (400, "user_id must be an integer")
    assert await tg.payments() == []


async def test_a_photo_is_shown_with_its_caption_and_its_image_is_served(emu, bot: Bot) -> None:
    _, _, http = emu
    png = qr_png("weixin://wxpay/bizpayurl?pr=Playground")
    sent = await bot.send_photo(101, BufferedInputFile(png, "qr.png"), caption="Scan with WeChat")
    _, view = await call(http, "GET", "/playground/api/chats/101?user_id=101")
    (shown,) = [m for m in view["messages"] if m["id"] == sent.message_id]
    assert shown["text"] == "Scan with WeChat" and shown["photo"]["url"].startswith("/control/")
    async with http.get(shown["photo"]["url"]) as r:
        assert r.status == 200 and await r.read() == png
