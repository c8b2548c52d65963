"""/pin <4-6 digits> sets the wallet's payment PIN; /pin off <pin> removes it. The message is
deleted whatever it held: a PIN must not stay in the chat history."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from billing.wallet_pin import PinCheck, check_pin, clear_pin, set_pin
from bot.context import BotContext
from bot.handlers.wallet_pay import has_pin, locked_text
from bot.i18n import t
from bot.replies import Replies
from membership.errors import RuleError
from storage.models import User, stored_id


def router() -> Router:
    r = Router(name="pin")
    r.message.register(pin, Command("pin"), F.chat.type == "private")
    r.message.register(pin_private_only, Command("pin"))
    return r


async def pin_private_only(message: Message, out: Replies, lang: str) -> None:
    out.add(message.delete())
    out.add(message.answer(t("private_only", lang)))


async def pin(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    args = (command.args or "").split()
    if args:
        out.add(message.delete())
    if user is None:
        return
    if ctx.wallet_rules is None:
        out.add(message.answer(t("wallet_off", lang)))
        return
    now = ctx.clock.now()
    if len(args) == 1 and args[0] != "off":
        if await has_pin(session, stored_id(user)):
            # Changing it takes the old one: whoever holds the phone must not reset it.
            out.add(message.answer(t("pin_already_set", lang)))
            return
        try:
            await set_pin(session, stored_id(user), args[0], now)
        except RuleError as e:
            out.add(message.answer(t(e.key, lang, **e.params) + "\n" + t("pin_usage", lang)))
            return
        out.add(message.answer(t("pin_set", lang)))
        return
    if len(args) == 2 and args[0] == "off":
        checked = await check_pin(session, stored_id(user), args[1], ctx.wallet_rules, now)
        if checked.status == PinCheck.NOT_SET:
            out.add(message.answer(t("pin_none", lang)))
        elif checked.status == PinCheck.LOCKED:
            out.add(message.answer(locked_text(checked.locked_until, lang)))
        elif checked.status == PinCheck.WRONG:
            out.add(message.answer(t("pin_wrong", lang, tries=checked.tries_left)))
        else:
            await clear_pin(session, stored_id(user), now)
            out.add(message.answer(t("pin_cleared", lang)))
        return
    out.add(message.answer(t("pin_usage", lang)))
