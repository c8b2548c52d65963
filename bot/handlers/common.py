"""/help, /language, and a helpful answer to anything we do not understand."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.handlers.callbacks import LangCb
from bot.i18n import LANGUAGES, t
from bot.replies import Replies
from storage.models import User

_NAMES = {"en": "English", "zh": "中文"}


def router() -> Router:
    r = Router(name="common")
    r.message.register(help_, Command("help"))
    r.message.register(language, Command("language"))
    r.callback_query.register(set_language, LangCb.filter())
    r.message.register(unknown, F.chat.type == "private")
    r.callback_query.register(stale_button)
    return r


async def help_(message: Message, out: Replies, lang: str) -> None:
    out.add(message.answer(t("help", lang)))


async def language(message: Message, out: Replies, lang: str) -> None:
    kb = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=_NAMES[c], callback_data=LangCb(code=c).pack())
                for c in LANGUAGES
            ]
        ]
    )
    out.add(message.answer(t("language_pick", lang), reply_markup=kb))


async def set_language(
    query: CallbackQuery, out: Replies, callback_data: LangCb, user: User | None
) -> None:
    code = callback_data.code if callback_data.code in LANGUAGES else "en"
    if user is not None:
        user.language = code
    out.add(query.answer())
    if query.message is not None:
        out.add(query.message.answer(t("language_set", code)))


async def unknown(message: Message, out: Replies, lang: str) -> None:
    out.add(message.answer(t("unknown", lang)))


async def stale_button(query: CallbackQuery, out: Replies, lang: str) -> None:
    out.add(query.answer(t("unknown", lang), show_alert=False))
