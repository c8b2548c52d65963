"""The Telegram emulator driven by a real aiogram Bot over HTTP, plus its control client."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import CommandStart
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    Update,
)
from aiohttp import web

from billing.qr_image import qr_png
from sandbox.telegram import EmulatorClient, EmulatorError, TelegramEmulator

TOKEN = "123456:TEST-token_secret"
BOT_ID = 123456
OWNER, ANN, BOB = 1001, 1002, 1003
GROUP = -1001234567890
ALL_UPDATES = [
    "message",
    "callback_query",
    "chat_member",
    "my_chat_member",
    "chat_join_request",
    "pre_checkout_query",
]


# One emulator and one Bot for the module (aiogram's session close sleeps 0.25 s); every test
# starts from POST /control/reset, which also exercises reset.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def emulator() -> AsyncIterator[TelegramEmulator]:
    emu = TelegramEmulator(webhook_retry_delay=0.05)
    await emu.start()
    yield emu
    await emu.stop()


def make_bot(base_url: str, token: str = TOKEN) -> Bot:
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_bot(emulator: TelegramEmulator) -> AsyncIterator[Bot]:
    b = make_bot(emulator.base_url)
    yield b
    await b.session.close()


@pytest_asyncio.fixture(loop_scope="module")
async def tg(emulator: TelegramEmulator) -> AsyncIterator[EmulatorClient]:
    client = EmulatorClient(emulator.base_url)
    await client.reset()
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="module")
async def bot(shared_bot: Bot, tg: EmulatorClient) -> Bot:
    return shared_bot


async def users(tg: EmulatorClient) -> None:
    await tg.create_bot(TOKEN)
    await tg.create_user(OWNER, "Olga", username="olga")
    await tg.create_user(ANN, "Ann", username="ann", language_code="en")
    await tg.create_user(BOB, "Bob")


async def group(tg: EmulatorClient, bot_rights: dict[str, bool] | None = None) -> None:
    """Owner's supergroup with the bot as admin (invite + restrict by default)."""
    await users(tg)
    await tg.create_chat(GROUP, creator_id=OWNER, title="Paid club")
    await tg.promote(GROUP, BOT_ID, bot_rights)


async def drain(bot: Bot, allowed: list[str] | None = None) -> list[Update]:
    """Fetch and confirm everything pending (and set allowed_updates when given)."""
    updates = await bot.get_updates(timeout=0, allowed_updates=allowed)
    if updates:
        await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    return updates


async def test_get_me_and_auth(emulator: TelegramEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (BOT_ID, True, "gatepass_bot")
    impostor = make_bot(emulator.base_url, f"{BOT_ID}:wrong-secret")
    with pytest.raises(TelegramUnauthorizedError):
        await impostor.get_me()
    await impostor.session.close()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{emulator.base_url}/bot{TOKEN}/noSuchMethod") as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        # Method names are case-insensitive; JSON bodies work too.
        async with http.post(f"{emulator.base_url}/bot{TOKEN}/GETME", json={}) as resp:
            assert (await resp.json())["result"]["username"] == "gatepass_bot"


async def test_message_update_round_trip(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    message_id = await tg.send_text(ANN, "/start g_42")
    updates = await bot.get_updates(timeout=0)
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None and message.message_id == message_id
    assert message.text == "/start g_42" and message.chat.type == "private"
    assert message.from_user is not None and message.from_user.username == "ann"
    assert message.entities is not None and message.entities[0].type == "bot_command"
    assert message.entities[0].length == len("/start")
    # Not confirmed yet: fetched again. Confirming with offset removes it.
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [updates[0].update_id]
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == []
    assert await tg.pending_updates() == 0


async def test_long_poll_returns_when_an_update_arrives(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    assert not poll.done()
    await tg.send_text(ANN, "hello")
    updates = await asyncio.wait_for(poll, 2)
    assert time.monotonic() - started < 1.5
    assert updates[0].message is not None and updates[0].message.text == "hello"


async def test_default_allowed_updates_drop_chat_member(tg: EmulatorClient, bot: Bot) -> None:
    await group(tg)
    types = [u.event_type for u in await drain(bot)]  # default allowed_updates
    assert types == ["my_chat_member", "message"]  # promoted + "bot joined" service message
    await tg.add_member(GROUP, ANN)
    types = [u.event_type for u in await drain(bot)]
    assert "chat_member" not in types and "message" in types  # the update is lost for good
    await drain(bot, ALL_UPDATES)
    await tg.add_member(GROUP, BOB)
    updates = await drain(bot)  # the last list given is remembered
    event = next(u.chat_member for u in updates if u.chat_member)
    assert event.old_chat_member.status == "left" and event.new_chat_member.status == "member"
    assert event.from_user.id == OWNER and event.new_chat_member.user.id == BOB


async def test_create_invite_link_needs_the_right(tg: EmulatorClient, bot: Bot) -> None:
    await group(tg, {"can_invite_users": False, "can_restrict_members": True})
    with pytest.raises(TelegramBadRequest, match="not enough rights to manage chat invite link"):
        await bot.create_chat_invite_link(GROUP)
    await tg.demote(GROUP, BOT_ID)
    with pytest.raises(TelegramBadRequest, match="not enough rights"):
        await bot.create_chat_invite_link(GROUP)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.create_chat_invite_link(-100999)


async def test_member_limit_with_join_request_is_refused(tg: EmulatorClient, bot: Bot) -> None:
    await group(tg)
    with pytest.raises(
        TelegramBadRequest,
        match="member limit can't be specified for links requiring administrator approval",
    ):
        await bot.create_chat_invite_link(GROUP, member_limit=1, creates_join_request=True)


async def test_single_use_link(tg: EmulatorClient, bot: Bot) -> None:
    await group(tg)
    await drain(bot, ALL_UPDATES)
    link = await bot.create_chat_invite_link(
        GROUP, name="order 17", member_limit=1, expire_date=int(time.time()) + 3600
    )
    assert link.invite_link.startswith("https://t.me/+") and link.member_limit == 1
    assert (link.is_primary, link.is_revoked, link.creator.id) == (False, False, BOT_ID)
    assert await tg.join_by_link(ANN, link.invite_link) == "joined"
    assert await tg.join_by_link(BOB, link.invite_link) == "limit_reached"
    assert await tg.member_status(GROUP, ANN) == "member"
    assert await tg.member_status(GROUP, BOB) == "left"
    event = next(u.chat_member for u in await drain(bot) if u.chat_member)
    assert event.new_chat_member.user.id == ANN and event.from_user.id == ANN
    assert event.invite_link is not None and event.invite_link.invite_link == link.invite_link
    revoked = await bot.revoke_chat_invite_link(GROUP, link.invite_link)
    assert revoked.is_revoked
    assert await tg.join_by_link(BOB, link.invite_link) == "revoked"
    assert await tg.join_by_link(BOB, "https://t.me/+nonexistent") == "invalid"


async def test_expired_link(tg: EmulatorClient, bot: Bot) -> None:
    await group(tg)
    link = await bot.create_chat_invite_link(GROUP, expire_date=int(time.time()) + 60)
    await tg.advance_clock(61)
    assert await tg.join_by_link(ANN, link.invite_link) == "expired"
    with pytest.raises(TelegramBadRequest, match="EXPIRE_DATE_INVALID"):
        await bot.create_chat_invite_link(GROUP, expire_date=int(time.time()) + 30)


async def test_join_request_approved(tg: EmulatorClient, bot: Bot) -> None:
    await group(tg)
    await drain(bot, ALL_UPDATES)
    link = await bot.create_chat_invite_link(GROUP, creates_join_request=True)
    assert await tg.join_by_link(ANN, link.invite_link) == "requested"
    assert await tg.join_requests(GROUP) == [
        {"user_id": ANN, "date": pytest.approx(time.time(), abs=5), "invite_link": link.invite_link}
    ]
    updates = await drain(bot)
    request = next(u.chat_join_request for u in updates if u.chat_join_request)
    assert request.from_user.id == ANN and request.user_chat_id == ANN
    assert request.invite_link is not None and request.invite_link.pending_join_request_count == 1
    assert await bot.approve_chat_join_request(GROUP, ANN)
    assert await tg.member_status(GROUP, ANN) == "member"
    assert await tg.join_requests(GROUP) == []
    event = next(u.chat_member for u in await drain(bot) if u.chat_member)
    assert event.via_join_request and event.from_user.id == BOT_ID
    with pytest.raises(TelegramBadRequest, match="USER_ALREADY_PARTICIPANT"):
        await bot.approve_chat_join_request(GROUP, ANN)


async def test_join_request_declined(tg: EmulatorClient, bot: Bot) -> None:
    await group(tg)
    link = await bot.create_chat_invite_link(GROUP, creates_join_request=True)
    assert await tg.join_by_link(BOB, link.invite_link) == "requested"
    assert await bot.decline_chat_join_request(GROUP, BOB)
    assert await tg.member_status(GROUP, BOB) == "left"
    with pytest.raises(TelegramBadRequest, match="HIDE_REQUESTER_MISSING"):
        await bot.decline_chat_join_request(GROUP, BOB)
    with pytest.raises(TelegramBadRequest, match="HIDE_REQUESTER_MISSING"):
        await bot.approve_chat_join_request(GROUP, ANN)


async def test_ban_then_unban_only_if_banned(tg: EmulatorClient, bot: Bot) -> None:
    await group(tg)
    await tg.add_member(GROUP, ANN)
    link = await bot.create_chat_invite_link(GROUP)
    assert await bot.ban_chat_member(GROUP, ANN, until_date=int(time.time()) + 10)
    member = await bot.get_chat_member(GROUP, ANN)
    assert member.status == "kicked" and member.until_date is not None  # 10 s = forever
    assert member.until_date.timestamp() == 0
    assert await tg.join_by_link(ANN, link.invite_link) == "banned"
    assert await bot.unban_chat_member(GROUP, ANN, only_if_banned=True)
    assert await tg.member_status(GROUP, ANN) == "left"
    assert await tg.join_by_link(ANN, link.invite_link) == "joined"
    # only_if_banned on a present member changes nothing; without it the member is removed.
    assert await bot.unban_chat_member(GROUP, ANN, only_if_banned=True)
    assert await tg.member_status(GROUP, ANN) == "member"
    assert (await bot.get_chat_member(GROUP, BOB)).status == "left"  # never there
    with pytest.raises(TelegramBadRequest, match="can't remove chat owner"):
        await bot.ban_chat_member(GROUP, OWNER)


async def test_ban_needs_restrict_right(tg: EmulatorClient, bot: Bot) -> None:
    await group(tg, {"can_invite_users": True})
    await tg.add_member(GROUP, ANN)
    with pytest.raises(
        TelegramBadRequest, match="not enough rights to restrict/unrestrict chat member"
    ):
        await bot.ban_chat_member(GROUP, ANN)


async def test_private_messages_need_a_start_or_a_recent_join_request(
    tg: EmulatorClient,
    bot: Bot,
) -> None:
    await group(tg)
    await tg.add_member(GROUP, BOB)  # the bot knows Bob, but he never wrote to it
    with pytest.raises(TelegramForbiddenError, match="bot can't initiate conversation"):
        await bot.send_message(BOB, "hi")
    link = await bot.create_chat_invite_link(GROUP, creates_join_request=True)
    assert await tg.join_by_link(ANN, link.invite_link) == "requested"
    sent = await bot.send_message(ANN, "Pay first, please")
    assert sent.chat.id == ANN
    assert (await tg.wait_for_message(ANN)).text == "Pay first, please"
    await tg.advance_clock(6 * 60)
    with pytest.raises(TelegramForbiddenError, match="bot can't initiate conversation"):
        await bot.send_message(ANN, "still there?")
    await tg.send_text(BOB, "/start")
    await bot.send_message(BOB, "welcome")
    await tg.block_bot(BOB)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(BOB, "hello?")


async def test_injected_faults(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    await tg.send_text(ANN, "/start")
    await tg.inject_fault("sendMessage", error_code=429, retry_after=1)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(ANN, "one")
    assert caught.value.retry_after == 1
    await tg.inject_fault(None, error_code=502)
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.send_message(ANN, "two")
    await bot.send_message(ANN, "three")
    assert [m.text for m in await tg.sent_messages(ANN)] == ["three"]
    calls = await tg.calls("sendMessage")
    assert [c["error_code"] for c in calls] == [429, 502, None]
    assert (await tg.stats())["served_429"] == 1


async def test_a_fault_for_one_chat_leaves_the_other_chats_alone(
    tg: EmulatorClient, bot: Bot
) -> None:
    await users(tg)
    await tg.send_text(ANN, "/start")
    await tg.send_text(BOB, "/start")
    await tg.inject_fault("sendMessage", error_code=429, retry_after=2, chat_id=BOB)
    await bot.send_message(ANN, "to Ann")  # another chat: the fault waits for Bob
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(BOB, "to Bob")
    assert caught.value.retry_after == 2
    await bot.send_message(BOB, "to Bob again")
    calls = await tg.calls("sendMessage")
    assert [(c["params"]["chat_id"], c["error_code"]) for c in calls] == [
        (str(ANN), None),
        (str(BOB), 429),
        (str(BOB), None),
    ]


async def test_rate_limit_produces_429(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    await tg.send_text(ANN, "/start")
    await tg.set_rate_limit(per_chat_per_second=2)
    outcomes = []
    for i in range(5):
        try:
            await bot.send_message(ANN, f"n{i}")
            outcomes.append("ok")
        except TelegramRetryAfter as exc:
            assert exc.retry_after >= 1
            outcomes.append("429")
    assert outcomes[:2] == ["ok", "ok"] and "429" in outcomes
    assert (await tg.stats())["served_429"] == outcomes.count("429")
    await tg.set_rate_limit()
    await bot.send_message(ANN, "unlimited again")


async def test_send_document_is_stored(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    await tg.send_text(OWNER, "/export")
    content = b"user,expires\nann,2030-01-01\n"
    sent = await bot.send_document(
        OWNER,
        BufferedInputFile(content, "members.csv"),
        caption="Members of <b>Paid club</b>",
        parse_mode="HTML",
    )
    assert sent.document is not None and sent.document.file_name == "members.csv"
    assert sent.caption == "Members of Paid club"
    stored = await tg.wait_for_message(OWNER, lambda m: m.kind == "document")
    assert stored.document_bytes == content and stored.document is not None
    assert stored.document["mime_type"] == "text/csv" and stored.text == "Members of Paid club"
    downloaded = await bot.download(sent.document.file_id)
    assert downloaded is not None and downloaded.read() == content


async def test_send_photo_upload_sizes_and_download(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    await tg.send_text(ANN, "/start")
    png = qr_png("weixin://wxpay/bizpayurl?pr=Emulator1")
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="I have paid", callback_data="paid:1")]]
    )
    sent = await bot.send_photo(
        ANN,
        BufferedInputFile(png, "qr.png"),
        caption="Scan with <b>WeChat</b>",
        parse_mode="HTML",
        reply_markup=keyboard,
    )
    # Bot API: `photo` is a list of PhotoSize, smallest first, the last the full image.
    assert sent.photo is not None and len(sent.photo) >= 2
    widths = [p.width for p in sent.photo]
    assert widths == sorted(widths) and widths[0] <= 90
    side = struct.unpack(">I", png[16:20])[0]
    assert (sent.photo[-1].width, sent.photo[-1].height) == (side, side)
    assert sent.caption == "Scan with WeChat" and sent.caption_entities
    stored = await tg.wait_for_message(ANN, lambda m: m.kind == "photo")
    assert stored.photo_bytes == png and stored.text == "Scan with WeChat"
    assert stored.callback_data == ["paid:1"]
    downloaded = await bot.download(sent.photo[-1].file_id)
    assert downloaded is not None and downloaded.read() == png
    # Sent again by file_id: the same photo.
    again = await bot.send_photo(ANN, sent.photo[0].file_id)
    assert again.photo is not None
    assert [p.file_id for p in again.photo] == [p.file_id for p in sent.photo]


async def test_send_photo_refusals(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    await tg.send_text(ANN, "/start")
    png = qr_png("https://qr.alipay.com/bax0test")
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.send_photo(ANN, BufferedInputFile(png, "qr.png"), caption="x" * 1025)
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(ANN, BufferedInputFile(b"not an image", "qr.png"))
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_photo(ANN, "no-such-file-id")
    with pytest.raises(TelegramBadRequest, match="failed to get HTTP URL content"):
        await bot.send_photo(ANN, "https://example.com/qr.png")
    doc = await bot.send_document(ANN, BufferedInputFile(b"a,b\n", "x.csv"))
    assert doc.document is not None
    with pytest.raises(TelegramBadRequest, match="Document as Photo"):
        await bot.send_photo(ANN, doc.document.file_id)
    wide = bytearray(png)
    wide[16:24] = struct.pack(">II", 4000, 100)  # a 40:1 strip
    with pytest.raises(TelegramBadRequest, match="PHOTO_INVALID_DIMENSIONS"):
        await bot.send_photo(ANN, BufferedInputFile(bytes(wide), "strip.png"))
    # A caption of exactly 1024 characters is fine.
    ok = await bot.send_photo(ANN, BufferedInputFile(png, "qr.png"), caption="y" * 1024)
    assert ok.caption == "y" * 1024
    assert len([m for m in await tg.sent_messages(ANN) if m.kind == "photo"]) == 1


async def test_buttons_callbacks_and_edits(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    await tg.send_text(ANN, "/start")
    await drain(bot)
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text="Monthly", callback_data="plan:1")],
            [InlineKeyboardButton(text="Terms", url="https://example.com/terms")],
        ]
    )
    sent = await bot.send_message(
        ANN, "<b>Pick</b> a plan", parse_mode="HTML", reply_markup=keyboard
    )
    assert sent.text == "Pick a plan" and sent.entities and sent.entities[0].type == "bold"
    stored = await tg.wait_for_message(ANN)
    assert stored.callback_data == ["plan:1"]
    assert stored.button_urls == ["https://example.com/terms"]
    query_id = await tg.press_button(ANN, sent.message_id, "plan:1")
    with pytest.raises(EmulatorError):
        await tg.press_button(ANN, sent.message_id, "plan:2")
    query = (await drain(bot))[0].callback_query
    assert query is not None and query.id == query_id and query.data == "plan:1"
    assert isinstance(query.message, Message) and query.message.message_id == sent.message_id
    assert await bot.answer_callback_query(query_id, text="Noted")
    assert (await tg.callback_answer(query_id))["answer"]["text"] == "Noted"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query_id)
    await bot.edit_message_text("Monthly it is", chat_id=ANN, message_id=sent.message_id)
    edited = (await tg.sent_messages(ANN))[-1]
    assert edited.text == "Monthly it is" and edited.edit_date and edited.buttons == []
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("Monthly it is", chat_id=ANN, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(ANN, "<b>broken", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(ANN, "   ")


async def test_stars_invoice_payment_and_refund(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    await tg.send_text(ANN, "/start")
    await drain(bot)
    invoice = await bot.send_invoice(
        ANN,
        title="Paid club, 30 days",
        description="Access",
        payload="order:17",
        currency="XTR",
        provider_token="",
        prices=[LabeledPrice(label="30 days", amount=250)],
    )
    assert invoice.invoice is not None and invoice.invoice.total_amount == 250

    async def shop() -> Update:
        """The bot side: accept the pre-checkout query, return the payment update."""
        offset = None
        while True:
            for update in await bot.get_updates(offset=offset, timeout=2):
                offset = update.update_id + 1
                if update.pre_checkout_query:
                    assert update.pre_checkout_query.invoice_payload == "order:17"
                    await bot.answer_pre_checkout_query(update.pre_checkout_query.id, ok=True)
                if update.message and update.message.successful_payment:
                    return update

    shop_task = asyncio.create_task(shop())
    result = await tg.pay_invoice(ANN, invoice.message_id, timeout=3)
    assert result["status"] == "paid"
    update = await asyncio.wait_for(shop_task, 3)
    payment = update.message.successful_payment if update.message else None
    assert payment is not None and payment.currency == "XTR" and payment.total_amount == 250
    assert payment.telegram_payment_charge_id == result["telegram_payment_charge_id"]
    assert await bot.refund_star_payment(ANN, payment.telegram_payment_charge_id)
    with pytest.raises(TelegramBadRequest, match="CHARGE_ALREADY_REFUNDED"):
        await bot.refund_star_payment(ANN, payment.telegram_payment_charge_id)
    refunded = [
        u.message.refunded_payment
        for u in await drain(bot)
        if u.message and u.message.refunded_payment
    ]
    assert len(refunded) == 1 and refunded[0] is not None and refunded[0].total_amount == 250


async def test_webhook_delivers_with_secret_and_retries(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    received: list[tuple[str | None, dict[str, Any]]] = []
    answers = [500, 200]

    async def hook(request: web.Request) -> web.Response:
        received.append(
            (request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json())
        )
        return web.json_response({}, status=answers.pop(0) if answers else 200)

    app = web.Application()
    app.router.add_post("/telegram/webhook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        assert await bot.set_webhook(
            f"http://127.0.0.1:{port}/telegram/webhook",
            secret_token="s3cret",
            allowed_updates=["message"],
        )
        with pytest.raises(
            TelegramConflictError, match="can't use getUpdates method while webhook is active"
        ):
            await bot.get_updates()
        await tg.send_text(ANN, "/start")
        for _ in range(100):
            if len(received) >= 2:
                break
            await asyncio.sleep(0.02)
        assert [secret for secret, _ in received] == ["s3cret", "s3cret"]
        assert received[0][1] == received[1][1]  # the 500 made Telegram retry
        update = Update.model_validate(received[1][1])
        assert update.message is not None and update.message.text == "/start"
        info = await bot.get_webhook_info()
        assert info.pending_update_count == 0 and info.allowed_updates == ["message"]
        assert info.last_error_message and "500" in info.last_error_message
        assert await bot.delete_webhook()
        assert await bot.get_updates(timeout=0) == []
    finally:
        await runner.cleanup()


async def test_dispatcher_polling_replies(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        name = message.from_user.first_name if message.from_user else "?"
        await message.answer(f"Hello, {name}")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    task = asyncio.create_task(
        dispatcher.start_polling(
            bot, handle_signals=False, close_bot_session=False, polling_timeout=1
        )
    )
    try:
        await tg.send_text(ANN, "/start")
        reply = await tg.wait_for_message(ANN, lambda m: (m.text or "").startswith("Hello"))
        assert reply.text == "Hello, Ann"
    finally:
        # Cancelling start_polling() alone would leave aiogram's inner polling task running
        # (asyncio.wait does not cancel it); stop_polling() ends both, then the task returns.
        await dispatcher.stop_polling()
        await asyncio.wait_for(task, 3)


async def test_group_privacy_and_service_messages(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    await tg.create_chat(GROUP, creator_id=OWNER, type="supergroup", title="Club")
    await tg.add_member(GROUP, BOT_ID)  # a plain member: privacy mode, no chat_member
    await tg.add_member(GROUP, ANN)
    await drain(bot, ALL_UPDATES)
    await tg.send_text(ANN, "just chatting", chat_id=GROUP)
    await tg.send_text(ANN, "/help@someotherbot", chat_id=GROUP)
    await tg.send_text(ANN, "/help@gatepass_bot", chat_id=GROUP)
    await tg.add_member(GROUP, BOB)
    await tg.leave_chat(GROUP, ANN)
    updates = await drain(bot)
    assert [u.event_type for u in updates] == ["message", "message", "message"]
    help_msg, joined, left = (u.message for u in updates)
    assert help_msg is not None and help_msg.text == "/help@gatepass_bot"
    assert joined is not None and joined.new_chat_members and joined.new_chat_members[0].id == BOB
    assert left is not None and left.left_chat_member and left.left_chat_member.id == ANN
    # As an admin the bot hears everything and gets chat_member updates.
    await tg.promote(GROUP, BOT_ID)
    await tg.send_text(BOB, "just chatting", chat_id=GROUP)
    await tg.leave_chat(GROUP, BOB)
    types = [u.event_type for u in await drain(bot)]
    assert types == ["my_chat_member", "message", "chat_member", "message"]


async def test_channel_admin_rights_parse(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    channel = -1005550001
    await tg.create_chat(channel, creator_id=OWNER, type="channel", title="News")
    await drain(bot)
    await tg.promote(channel, BOT_ID, {"can_post_messages": True, "can_invite_users": True})
    update = (await drain(bot))[0].my_chat_member
    assert update is not None and update.chat.type == "channel"
    admin = update.new_chat_member
    assert admin.status == "administrator" and admin.can_post_messages is True
    # TDLib's chatAdministratorRights: can_restrict_members is "always true for channels".
    assert admin.can_restrict_members is True
    posted = await bot.send_message(channel, "hello subscribers")
    assert posted.sender_chat is not None and posted.sender_chat.id == channel
    admins = await bot.get_chat_administrators(channel)
    assert {a.user.id for a in admins} == {OWNER, BOT_ID}
    chat = await bot.get_chat(channel)
    assert chat.title == "News" and chat.type == "channel"


async def test_block_and_unblock_emit_my_chat_member(tg: EmulatorClient, bot: Bot) -> None:
    await users(tg)
    await tg.send_text(ANN, "/start")
    await drain(bot)
    await tg.block_bot(ANN)
    await tg.send_text(ANN, "/start")  # "Restart" in the app unblocks
    updates = await drain(bot)
    assert [u.event_type for u in updates] == ["my_chat_member", "my_chat_member", "message"]
    blocked = updates[0].my_chat_member
    assert blocked is not None and blocked.new_chat_member.status == "kicked"
    assert updates[1].my_chat_member is not None
    assert updates[1].my_chat_member.new_chat_member.status == "member"
    await bot.send_message(ANN, "welcome back")


async def test_links_of_others_and_edit_semantics(tg: EmulatorClient, bot: Bot) -> None:
    await group(tg)
    await drain(bot, ALL_UPDATES)
    shared = await tg.create_invite_link(GROUP, OWNER, name="owner's link")
    assert await tg.join_by_link(ANN, shared["invite_link"]) == "joined"
    event = next(u.chat_member for u in await drain(bot) if u.chat_member)
    assert event.invite_link is not None and event.invite_link.invite_link.endswith("...")
    assert event.invite_link.creator.id == OWNER
    with pytest.raises(TelegramBadRequest, match="INVITE_HASH_EXPIRED"):
        await bot.revoke_chat_invite_link(GROUP, shared["invite_link"])
    mine = await bot.create_chat_invite_link(GROUP, name="a" * 40, member_limit=5)
    assert mine.name == "a" * 32
    edited = await bot.edit_chat_invite_link(
        GROUP, mine.invite_link, expire_date=int(time.time()) + 600
    )
    assert edited.member_limit is None and edited.name is None and edited.expire_date
    links = await tg.invite_links(GROUP)
    assert {link["creator_id"] for link in links} == {OWNER, BOT_ID}


async def test_temporary_ban_lapses(tg: EmulatorClient, bot: Bot) -> None:
    await group(tg)
    await tg.add_member(GROUP, ANN)
    until = int(time.time()) + 3600
    await bot.ban_chat_member(GROUP, ANN, until_date=until)
    member = await tg.chat_member(GROUP, ANN)
    assert member["status"] == "kicked" and member["member"]["until_date"] == until
    await tg.advance_clock(3601)
    assert await tg.member_status(GROUP, ANN) == "left"


async def test_webhook_reply_method_is_executed(tg: EmulatorClient, bot: Bot) -> None:
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler

    await users(tg)
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> Any:
        return message.answer("pong")  # answered inside the webhook response

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    app = web.Application()
    SimpleRequestHandler(
        dispatcher, bot, handle_in_background=False, secret_token="s3cret"
    ).register(app, path="/hook")
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        await bot.set_webhook(
            f"http://127.0.0.1:{runner.addresses[0][1]}/hook", secret_token="s3cret"
        )
        await tg.send_text(ANN, "/start")
        reply = await tg.wait_for_message(ANN, lambda m: m.text == "pong", timeout=3)
        assert reply.sender_id == BOT_ID
        await bot.delete_webhook()
    finally:
        await runner.cleanup()


async def test_misc_methods_parse(tg: EmulatorClient, bot: Bot) -> None:
    from aiogram.types import BotCommand

    await group(tg)
    await tg.add_member(GROUP, ANN)
    assert await bot.set_my_commands(
        [
            BotCommand(command="start", description="Begin"),
            BotCommand(command="my", description="My access"),
        ]
    )
    assert [c.command for c in await bot.get_my_commands()] == ["start", "my"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Command", description="x")])
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == []
    assert await bot.get_chat_member_count(GROUP) == 3  # owner, bot, Ann
    owner = await bot.get_chat_member(GROUP, OWNER)
    assert owner.status == "creator"
    with pytest.raises(TelegramBadRequest, match="user not found"):
        await bot.get_chat_member(GROUP, 987654)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.get_chat(BOB)  # never met the bot
    await tg.send_text(BOB, "/start")
    private = await bot.get_chat(BOB)
    assert private.type == "private" and private.first_name == "Bob"
    assert await bot.send_chat_action(BOB, "typing")
    sent = await bot.send_message(
        BOB,
        "menu",
        reply_markup=InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="A", callback_data="a")]]
        ),
    )
    await bot.edit_message_reply_markup(
        chat_id=BOB,
        message_id=sent.message_id,
        reply_markup=InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="B", callback_data="b")]]
        ),
    )
    assert (await tg.sent_messages(BOB))[-1].callback_data == ["b"]
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(
            BOB,
            "x",
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[[InlineKeyboardButton(text="A", callback_data="x" * 65)]]
            ),
        )
    assert await bot.delete_message(BOB, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(BOB, sent.message_id)
    assert await tg.sent_messages(BOB) == []
    assert len(await tg.sent_messages(BOB, include_deleted=True)) == 1
