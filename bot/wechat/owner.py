"""What a room's owner says to the bot on WeChat: /setup in the room; /addplan, /plans,
/members, /grant, /revoke, /stats, /refund and /guard in private.

The private commands are Telegram's (bot/owner_actions.py: the same parsers, rules and
one-line refusals); only /setup and /guard are WeChat's own: a room's owner and admins are
what the puppet says they are (Incoming), and a room's join guard is WeChat's choice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from bot.commands import ArgError, example_prices, parse_guard_args
from bot.i18n import t
from bot.owner_actions import (
    OwnerEnv,
    Said,
    add_plan_said,
    grant_said,
    members_said,
    plans_text,
    refund_said,
    refusal,
    renewal_stopper,
    revoke_said,
    stats_text,
)
from bot.wechat.events import Incoming, Outgoing
from membership.catalog import find_managed_group, register_group
from membership.errors import RuleError
from membership.policy import set_guard
from storage.models import ChatGroup, User

if TYPE_CHECKING:
    from bot.wechat.conversation import WechatEnv

# A new room only reports newcomers without access to its owner (membership/joins.py):
# WeChat has no join requests, and owners add their friends by hand.
NEW_ROOM_GUARD = "report"
COMMANDS = ("/addplan", "/plans", "/members", "/grant", "/revoke", "/stats", "/refund", "/guard")


def owner_env(env: WechatEnv, lang: str) -> OwnerEnv:
    # A configured admin id is a Telegram user's: on WeChat it only names who may refund
    # any order (billing.order_refunds), as it does on Telegram.
    admins = env.admin_ids
    return OwnerEnv("wechat", env.providers, admins, env.clock.now(), lang)


async def setup(
    session: AsyncSession, env: WechatEnv, msg: Incoming, user: User, lang: str
) -> list[Outgoing]:
    """/setup in a room: register it for sale. The sender must own the room, and the bot
    must own or administer it (to add buyers and remove whoever the owner asks)."""
    room = msg.room_id
    assert room is not None
    if msg.sender_id != msg.room_owner_id:
        return [Outgoing(to=room, text=t("wechat_setup_not_owner", lang))]
    if env.bot_id != msg.room_owner_id and env.bot_id not in msg.room_admin_ids:
        return [Outgoing(to=room, text=t("wechat_setup_bot_not_admin", lang))]
    now = env.clock.now()
    try:
        group, created = await register_group(
            session,
            user,
            "wechat",
            room,
            msg.room_topic or room,
            now,
            invite_mode="add_member",
            chat_type="group",
        )
    except RuleError as e:
        return [Outgoing(to=room, text=t(e.key, lang, **e.params))]
    if created:
        group.guard = NEW_ROOM_GUARD
    key = "wechat_setup_ok" if created else "wechat_setup_refreshed"
    text = t(
        key,
        lang,
        group=group.title,
        group_id=group.id,
        prices=example_prices(env.providers.values()),
        guard=t(f"guard_{group.guard}", lang),
    )
    return [Outgoing(to=room, text=text)]


def _buy_hint(lang: str) -> Callable[[ChatGroup], str]:
    return lambda group: t("wechat_buy_hint", lang)


async def command(
    session: AsyncSession, env: WechatEnv, user: User, word: str, args: str | None, lang: str
) -> str:
    """A private owner command (`word` is one of COMMANDS): the answer's text."""
    oenv = owner_env(env, lang)
    said: Said | str
    match word:
        case "/addplan":
            said = await add_plan_said(session, user, args, oenv, _buy_hint(lang))
        case "/plans":
            said = await plans_text(session, user, oenv)
        case "/members":
            said = await members_said(session, user, args, oenv)
        case "/grant":
            said = await grant_said(session, user, args, oenv, bot_name=env.bot_id)
        case "/revoke":
            stop = renewal_stopper(session, env.db, env.providers, oenv.now) if env.db else None
            said = await revoke_said(session, user, args, oenv, stop)
        case "/stats":
            said = await stats_text(session, user, oenv)
        case "/refund":
            said = await refund_said(session, user, args, oenv)
        case _:
            said = await guard(session, user, args, oenv)
    return said.text if isinstance(said, Said) else said


async def guard(session: AsyncSession, user: User, args: str | None, env: OwnerEnv) -> Said:
    """/guard <room> report|remove: what the bot does with a newcomer without access."""
    try:
        parsed = parse_guard_args(args)
        group = await find_managed_group(session, user, parsed.group_ref, env.admin_ids)
        await set_guard(session, user, group, parsed.guard, env.now)
    except (ArgError, RuleError) as e:
        await session.rollback()
        if e.key == "guard_bad":  # its text ends with the usage already
            return Said(t(e.key, env.lang, **e.params), True)
        return refusal(env, "usage_guard", e)
    return Said(t(f"guard_set_{parsed.guard}", env.lang, group=group.title, group_id=group.id))
