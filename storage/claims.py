"""Following an exactly-once claim (a Telegram update id, a WeChat message id) through the
handler's own commits and rollbacks.

The claim row is inserted first in the handler's session. A handler may commit part way
(a checkout commits its order before asking the provider) or roll back (undoing a refused
command); what the claim became decides what the caller does at the end: a claim that was
`committed` must be released if the handler then fails (or the retry would be a no-op), one
that was `lost` to a rollback must be made again before the final commit.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

ClaimState = Literal["pending", "committed", "lost"]


def track_claim(session: AsyncSession, key: str) -> None:
    """Start following the claim named `key` in `session` (it was just inserted)."""
    sync = session.sync_session
    sync.info[key] = "pending"

    def committed(s: Session) -> None:
        if s.info.get(key) == "pending":
            s.info[key] = "committed"

    def rolled_back(s: Session) -> None:
        if s.info.get(key) == "pending":
            s.info[key] = "lost"

    event.listen(sync, "after_commit", committed)
    event.listen(sync, "after_rollback", rolled_back)


def claim_state(session: AsyncSession, key: str) -> ClaimState | None:
    """What became of the claim `key` in `session` (None: it was never tracked here)."""
    state: ClaimState | None = session.sync_session.info.get(key)
    return state
