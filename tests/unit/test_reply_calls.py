"""bot/calls.py: a QR photo reply survives the outbox (stored as JSON, its image inline)."""

from __future__ import annotations

import json

from aiogram.methods import SendPhoto
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup

from billing.qr_image import qr_png
from bot.calls import decode_call, encode_call, is_send


def test_a_photo_reply_round_trips_through_json_with_its_bytes() -> None:
    png = qr_png("weixin://wxpay/bizpayurl?pr=RoundTrip")
    kb = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text="Open pay page", url="https://example.com/pay/GPX")],
            [InlineKeyboardButton(text="I have paid", callback_data="paidchk:GPX")],
        ]
    )
    method = SendPhoto(
        chat_id=42, photo=BufferedInputFile(png, "GPX.png"), caption="Scan", reply_markup=kb
    )
    assert is_send(method)
    stored = json.loads(json.dumps(encode_call(method)))  # what the outbox row holds
    back = decode_call(stored)
    assert isinstance(back, SendPhoto)
    assert isinstance(back.photo, BufferedInputFile) and back.photo.data == png
    assert back.photo.filename == "GPX.png"
    assert (back.chat_id, back.caption) == (42, "Scan")
    assert back.reply_markup == kb
