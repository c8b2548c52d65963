"""What people say to the bot on WeChat, routed: the WeChat dispatcher (bot/wechat/dispatch.py)
calls `on_message` once per message, in the message's own transaction, and queues what it
returns.

In a room the bot answers `/setup` only and ignores everything else (a room is for its
members' talk). In private: the owner commands (bot/wechat/owner.py), `/link`, a language
switch, and the buyer's words (bot/wechat/buyer.py), Chinese by default, English on request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from billing.provider import PaymentProvider
from bot.i18n import LANGUAGES, t
from bot.wechat import buyer, owner, wallet
from bot.wechat.events import Incoming, Outgoing
from bot.wechat.link import link
from storage.clock import Clock
from storage.db import Database
from storage.models import User
from storage.queries import get_or_create_user

DEFAULT_LANGUAGE = "zh"  # WeChat users are Chinese speakers unless they ask otherwise

# Buyer words, in either language, with or without a leading "/".
MENU = {"菜单", "menu", "start", "买", "购买", "buy"}
MY = {"我的", "my"}
ORDERS = {"订单", "orders"}
RENEW = {"续费", "renew"}
WALLET = {"钱包", "wallet"}
HELP = {"帮助", "help", "?", "\uff1f"}  # also the full-width question mark
LANGUAGE_WORDS = {"english": "en", "中文": "zh", "chinese": "zh"}
PICK_DIGITS = 6  # the longest number read as a pick from a list


@dataclass
class WechatEnv:
    """What the conversation needs from the running worker (plain values: bot/ never
    imports the gatepass/ wiring that builds them)."""

    public_url: str  # [web] public_url: the pay page links
    order_timeout: timedelta  # [scheduler] order_timeout_minutes
    providers: Mapping[str, PaymentProvider]
    clock: Clock
    bot_id: str  # the bot's own contact id: /setup checks it owns or administers the room
    # For /revoke of an auto-renewing access: stopping the renewal at its provider takes
    # sessions of its own (billing.subscriptions.cancel_auto_renew). Without it, /revoke
    # still revokes and warns the owner that the subscription may charge again.
    db: Database | None = None
    admin_ids: list[int] = field(default_factory=list)  # [telegram] admin_ids
    wallet_on: bool = True  # [wallet] enabled: off, 钱包 sells no top-ups


async def on_message(session: AsyncSession, env: WechatEnv, msg: Incoming) -> list[Outgoing]:
    msg = _without_nul(msg)
    text = msg.text.strip()
    if msg.room_id is not None:
        if _room_command(text) != "/setup":
            return []
        user = await _user(session, env, msg)
        return await owner.setup(session, env, msg, user, _lang(user))
    if not text:
        return []
    user = await _user(session, env, msg)
    lang = _lang(user)
    to = msg.sender_id
    # Any whitespace ends the command: a full-width space (U+3000, typed by a Chinese
    # keyboard in full-width mode) or a new line as well as " ".
    word, *rest = text.split(maxsplit=1)
    word, args = word.lower(), (rest[0].strip() if rest else "") or None
    if word in owner.COMMANDS:
        return [Outgoing(to=to, text=await owner.command(session, env, user, word, args, lang))]
    if word == "/setup":
        return [Outgoing(to=to, text=t("wechat_setup_room_only", lang))]
    if word == "/link":
        return [Outgoing(to=to, text=await link(session, env.clock.now(), user, args, lang))]
    switched = _language_choice(word, args)
    if switched == "":
        return [Outgoing(to=to, text=t("wechat_language_usage", lang))]
    if switched is not None:
        user.language = switched
        return [Outgoing(to=to, text=t("language_set", switched))]
    if text.isdecimal():
        # No list is that long, and int() refuses over 4300 digits: out of range, as 0 is.
        number = int(text) if len(text) <= PICK_DIGITS else 0
        picked = await wallet.pick(session, env, user, to, number, lang)
        if picked is not None:
            return picked
        return await buyer.pick(session, env, user, to, number, lang)
    plain = word.removeprefix("/") if args is None else None
    if plain in MENU:
        return await buyer.show_rooms(session, env, user, to, lang)
    if plain in MY:
        return await buyer.my_access(session, env, user, to, lang)
    if plain in ORDERS:
        return await buyer.my_orders(session, user, to, lang)
    if plain in WALLET:
        return await wallet.show_wallet(session, env, user, to, lang)
    if plain in RENEW:
        return await buyer.show_renewals(session, env, user, to, lang)
    if plain in HELP:
        return [Outgoing(to=to, text=t("wechat_help", lang))]
    return [Outgoing(to=to, text=t("wechat_unknown", lang))]


def _without_nul(msg: Incoming) -> Incoming:
    """The message with its NUL characters taken out: PostgreSQL stores no NUL in text, and
    one in a name, a room's topic or a plan's title failed the whole message unanswered."""
    return replace(
        msg,
        text=msg.text.replace("\x00", ""),
        sender_name=msg.sender_name.replace("\x00", ""),
        room_topic=msg.room_topic.replace("\x00", "") if msg.room_topic else msg.room_topic,
    )


# WeChat's @mention in a room: "@" and the member's name (spaces allowed), then U+2005.
_MENTIONS = re.compile(r"^(?:\s*@[^\u2005]*\u2005)+")


def _room_command(text: str) -> str:
    """The first word of a room message after any @mentions: WeChat users address the bot
    in a room as "@Bot /setup" (or type the mention by hand, a plain space after it)."""
    words = _MENTIONS.sub("", text).split()
    while words and words[0].startswith("@"):
        words.pop(0)
    return words[0].lower() if words else ""


def _language_choice(word: str, args: str | None) -> str | None:
    """`English` / `中文`, or `language en|zh` (`/language`, `语言` too): the language asked
    for; "" for `language` with no language we speak; None for anything else."""
    word = word.removeprefix("/")
    if word in ("language", "语言"):
        choice = (args or "").lower()
        return choice if choice in LANGUAGES else LANGUAGE_WORDS.get(choice, "")
    return LANGUAGE_WORDS.get(word) if args is None else None


async def _user(session: AsyncSession, env: WechatEnv, msg: Incoming) -> User:
    return await get_or_create_user(
        session,
        "wechat",
        msg.sender_id,
        env.clock.now(),
        first_name=msg.sender_name or None,
        language=DEFAULT_LANGUAGE,
    )


def _lang(user: User) -> str:
    return user.language or DEFAULT_LANGUAGE
