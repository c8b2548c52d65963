"""/broadcast <group> <text>: the owner's message to every member with active access.

The command only queues (membership/broadcast.py): the messages go out from the outbox,
paced by the process's rate budget, and the owner gets one report when the last one is
known (membership/broadcast_send.py).
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.commands import ArgError, parse_broadcast_args
from bot.context import BotContext
from bot.i18n import t
from bot.replies import Replies
from membership.broadcast import queue_broadcast
from membership.catalog import find_managed_group
from membership.errors import RuleError
from storage.models import User

_PRIVATE = F.chat.type == "private"


def router() -> Router:
    r = Router(name="broadcast")
    r.message.register(broadcast, Command("broadcast"), _PRIVATE)
    r.message.register(private_only, Command("broadcast"))
    return r


async def private_only(message: Message, out: Replies, lang: str) -> None:
    out.add(message.reply(t("private_only", lang)))


async def broadcast(
    message: Message,
    out: Replies,
    command: CommandObject,
    ctx: BotContext,
    session: AsyncSession,
    user: User | None,
    lang: str,
) -> None:
    if user is None:
        return
    try:
        args = parse_broadcast_args(command.args)
        # The group's owner (or a configured admin id), as for every owner's tool.
        group = await find_managed_group(session, user, args.group_ref, ctx.admin_ids)
    except (ArgError, RuleError) as e:
        out.add(message.reply(f"{t(e.key, lang, **e.params)}\n{t('usage_broadcast', lang)}"))
        return
    try:
        queued = await queue_broadcast(
            session,
            user,
            group,
            args.text,
            ctx.clock.now(),
            per_second=ctx.broadcast_per_second,
        )
    except RuleError as e:  # nobody to send to: the broadcast row goes too
        await session.rollback()
        out.add(message.reply(t(e.key, lang, **e.params)))
        return
    out.add(
        message.answer(
            t(
                "broadcast_queued",
                lang,
                broadcast_id=queued.broadcast_id,
                group=group.title,
                recipients=queued.recipients,
            )
        )
    )
