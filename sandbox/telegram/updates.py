"""A bot's update queue: allowed_updates filtering, getUpdates long polling and its conflicts."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections import OrderedDict
from typing import Any

from .errors import ApiError

# Telegram: "If not specified, the previous setting will be used ... by default, updates of all
# types except chat_member, message_reaction, and message_reaction_count are received."
DEFAULT_EXCLUDED = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

TERMINATED_BY_POLL = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
    "is running"
)
TERMINATED_BY_WEBHOOK = "Conflict: terminated by setWebhook request"


class UpdateQueue:
    """Updates waiting to be confirmed (polling) or delivered (webhook), oldest first."""

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.next_update_id = 1
        self.allowed: frozenset[str] | None = None  # None: Telegram's default set
        self.dropped = 0  # updates filtered out by allowed_updates
        self._wakeup = asyncio.Event()
        self._generation = 0  # bumps when a newer poll takes over
        self._interrupt = TERMINATED_BY_POLL
        self.closed = False
        # Updates already confirmed or delivered (newest last), so a test can make one come
        # again the way Telegram does when its confirmation was lost (recall).
        self.history: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.lose_answers = 0  # webhook answers to treat as lost
        self.redelivered = 0

    def allows(self, kind: str) -> bool:
        if self.allowed is None:
            return kind not in DEFAULT_EXCLUDED
        return kind in self.allowed

    def set_allowed(self, kinds: list[str] | None) -> None:
        """None keeps the previous setting; an empty list goes back to the default."""
        if kinds is None:
            return
        self.allowed = frozenset(kinds) or None

    def allowed_list(self) -> list[str] | None:
        return sorted(self.allowed) if self.allowed is not None else None

    def push(self, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        # Filtering happens when the update is created, so a type that is not allowed is lost
        # for good, exactly the trap Telegram sets for a bot that forgets chat_member.
        if not self.allows(kind):
            self.dropped += 1
            return None
        # A snapshot: a later edit of the message must not change an update already queued.
        update = {"update_id": self.next_update_id, kind: copy.deepcopy(payload)}
        self.next_update_id += 1
        self.pending.append(update)
        self.wake()
        return update

    def confirm(self, offset: int) -> None:
        if offset > 0:
            self._remember(u for u in self.pending if u["update_id"] < offset)
            self.pending = [u for u in self.pending if u["update_id"] >= offset]
        elif offset < 0:
            # "Negative offset ... All previous updates will be forgotten."
            self._remember(self.pending[:offset])
            self.pending = self.pending[offset:]

    def delivered(self, update: dict[str, Any]) -> None:
        """A webhook delivery was answered with a 2xx: the update is done."""
        if self.pending and self.pending[0] is update:
            self.pending.pop(0)
        self._remember([update])

    def _remember(self, updates: Any) -> None:
        for u in updates:
            self.history[u["update_id"]] = u
        while len(self.history) > 1000:
            self.history.popitem(last=False)

    def recall(self, update_id: int | None = None) -> dict[str, Any]:
        """Queue a confirmed update again, same update_id, ahead of newer ones: what Telegram
        does when the bot's confirmation never reached it (a replica killed between
        handling an update and confirming its offset, a webhook answer lost on the way).
        None: the newest confirmed update."""
        if update_id is None and self.history:
            update_id = next(reversed(self.history))
        update = self.history.get(update_id) if update_id is not None else None
        if update is None:
            raise KeyError(update_id)
        if not any(u["update_id"] == update_id for u in self.pending):
            self.pending.append(update)
            self.pending.sort(key=lambda u: u["update_id"])
            self.redelivered += 1
            self.wake()
        return update

    def drop_all(self) -> None:
        self.pending.clear()

    def wake(self) -> None:
        event, self._wakeup = self._wakeup, asyncio.Event()
        event.set()

    async def changed(self, timeout: float | None = None) -> None:
        """Wait until something is pushed (or the queue is woken), at most `timeout` seconds."""
        event = self._wakeup
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def interrupt(self, description: str = TERMINATED_BY_WEBHOOK) -> None:
        """End any waiting getUpdates with a 409 (setWebhook does this on Telegram)."""
        self._generation += 1
        self._interrupt = description
        self.wake()

    def close(self) -> None:
        self.closed = True
        self.wake()

    async def poll(self, offset: int, limit: int, timeout: float) -> list[dict[str, Any]]:
        # A newer getUpdates ends an older one that is still waiting, with 409.
        self.interrupt(TERMINATED_BY_POLL)
        generation = self._generation
        self.confirm(offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            if self.closed:
                return []
            if generation != self._generation:
                raise ApiError(409, self._interrupt)
            if self.pending:
                return self.pending[:limit]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await self.changed(remaining)
