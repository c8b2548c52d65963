"""`/link` on WeChat: a code for the bot on Telegram, or `/link CODE` with a code from there
(membership.links). The same texts as Telegram's /link (bot/handlers/link.py)."""

from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import t
from membership.admin import display_name
from membership.errors import RuleError
from membership.links import LinkOutcome, bind_link, issue_link_code, other_platform
from storage.models import User

_REFUSALS = {
    LinkOutcome.UNKNOWN: "link_code_unknown",
    LinkOutcome.EXPIRED: "link_code_expired",
    LinkOutcome.USED: "link_code_used",
    LinkOutcome.OWN_PLATFORM: "link_own_platform",
}


async def link(
    session: AsyncSession, now: datetime, user: User, args: str | None, lang: str
) -> str:
    """The answer to `/link` (args None) or `/link CODE`. A `platform` param is a platform
    id: bot.i18n.t shows its name."""
    if args is None:
        try:
            issued = await issue_link_code(session, user, now)
        except RuleError as e:
            return t(e.key, lang, **e.params)
        minutes = math.ceil((issued.expires_at - now).total_seconds() / 60)
        return t(
            "link_code_issued",
            lang,
            code=issued.code,
            minutes=minutes,
            platform=other_platform(user.platform),
        )
    if len(args.split()) != 1:  # a code is one word: anything else is no code of ours
        return t("link_code_unknown", lang)
    result = await bind_link(session, user, args, now)
    if result.outcome == LinkOutcome.BOUND and result.other is not None:
        return t(
            "link_bound",
            lang,
            platform=result.other.platform,
            name=display_name(result.other),
            moved=result.moved,
        )
    if result.outcome == LinkOutcome.ALREADY_LINKED:
        other = result.other.platform if result.other else other_platform(user.platform)
        return t("link_already", lang, platform=other)
    return t(_REFUSALS.get(result.outcome, "link_code_unknown"), lang)
