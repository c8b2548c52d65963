"""What /link says, on either platform: the Telegram handler (bot/handlers/link.py) and the
WeChat conversation both reply with these, so the rules and the words exist once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import t
from membership.admin import display_name
from membership.errors import RuleError
from membership.links import (
    CODE_TTL,
    BindResult,
    LinkOutcome,
    bind_link,
    issue_link_code,
    other_platform,
)
from storage.models import User

# The reply to each refusal of a bind; none changed anything.
_REFUSALS = {
    LinkOutcome.UNKNOWN: "link_code_unknown",
    LinkOutcome.EXPIRED: "link_code_expired",
    LinkOutcome.USED: "link_code_used",
    LinkOutcome.OWN_PLATFORM: "link_own_platform",
}


async def link_reply(
    session: AsyncSession, user: User, args: str | None, now: datetime, lang: str | None
) -> str:
    """`/link` (no argument): a new code to send on the other platform. `/link CODE`: bind a
    code made there. Anything else: one line with the usage; nothing changes."""
    words = (args or "").split()
    if not words:
        try:
            issued = await issue_link_code(session, user, now)
        except RuleError as e:  # raised before anything was written
            return t(e.key, lang, **e.params)
        return t(
            "link_code_issued",
            lang,
            code=issued.code,
            minutes=int(CODE_TTL.total_seconds() // 60),
            platform=other_platform(user.platform),
        )
    if len(words) != 1:
        return t("link_code_unknown", lang)
    return bind_text(await bind_link(session, user, words[0], now), lang)


def bind_text(result: BindResult, lang: str | None) -> str:
    """What a bind came to, in words."""
    if result.outcome is LinkOutcome.BOUND:
        assert result.other is not None
        return t(
            "link_bound",
            lang,
            platform=result.other.platform,
            name=display_name(result.other),
            moved=result.moved,
        )
    if result.outcome is LinkOutcome.ALREADY_LINKED:
        platform = result.other.platform if result.other is not None else "wechat"
        return t("link_already", lang, platform=platform)
    return t(_REFUSALS[result.outcome], lang)
