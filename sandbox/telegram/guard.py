"""Rate limits and injected faults: the ways a Bot API call fails before (or after) it runs."""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

from .errors import DEFAULT_DESCRIPTIONS, ApiError, too_many_requests

# Long polling is not counted: a waiting getUpdates would otherwise eat the budget it polls for.
UNLIMITED_METHODS = frozenset({"getUpdates"})


@dataclass
class Fault:
    method: str | None  # canonical method name, None = any method
    remaining: int
    error_code: int
    description: str
    retry_after: int | None = None
    when: str = "before"  # before: the call has no effect; after: it took effect anyway
    delay: float = 0.0  # seconds to wait before answering
    raw_body: str | None = None  # answer this text instead of JSON (e.g. an nginx 502 page)
    chat_id: str | None = None  # only calls about this chat (their chat_id), None = any

    def error(self) -> ApiError:
        return ApiError(self.error_code, self.description, retry_after=self.retry_after)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def make_fault(spec: dict[str, Any], canonical: dict[str, str]) -> Fault:
    code = int(spec.get("error_code", 429))
    retry_after = spec.get("retry_after")
    if code == 429 and retry_after is None:
        retry_after = 1
    description = spec.get("description") or (
        f"Too Many Requests: retry after {retry_after}"
        if code == 429
        else DEFAULT_DESCRIPTIONS.get(code, "Error")
    )
    method = spec.get("method")
    if method:
        if str(method).lower() not in canonical:
            raise ValueError(f"unknown Bot API method {method!r}")  # a typo would never fire
        method = canonical[str(method).lower()]
    when = spec.get("when", "before")
    if when not in ("before", "after"):
        raise ValueError("when must be 'before' or 'after'")
    return Fault(
        method=method,
        remaining=int(spec.get("count", 1)),
        error_code=code,
        description=description,
        retry_after=None if retry_after is None else int(retry_after),
        when=when,
        delay=float(spec.get("delay", 0.0)),
        raw_body=spec.get("raw_body"),
        chat_id=None if spec.get("chat_id") is None else str(spec["chat_id"]),
    )


class Guard:
    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.global_per_second: float | None = None
        self.per_chat_per_second: float | None = None
        self.served_429 = 0
        self._global: dict[int, deque[float]] = defaultdict(deque)
        self._per_chat: dict[tuple[int, str], deque[float]] = defaultdict(deque)

    def set_limits(
        self, global_per_second: float | None, per_chat_per_second: float | None
    ) -> None:
        self.global_per_second = global_per_second
        self.per_chat_per_second = per_chat_per_second
        self._global.clear()
        self._per_chat.clear()

    def take_fault(self, method: str, chat_id: str | None = None) -> Fault | None:
        for fault in self.faults:
            if (
                fault.remaining > 0
                and fault.method in (None, method)
                and fault.chat_id in (None, chat_id)
            ):
                fault.remaining -= 1
                if fault.error_code == 429:
                    self.served_429 += 1
                return fault
        return None

    def check_rate(self, bot_id: int, method: str, chat_key: str | None) -> None:
        """Sliding one-second windows; a refused call does not use up budget."""
        if method in UNLIMITED_METHODS:
            return
        now = time.monotonic()
        windows: list[tuple[deque[float], float]] = []
        if self.global_per_second:
            windows.append((self._global[bot_id], self.global_per_second))
        if self.per_chat_per_second and chat_key is not None:
            windows.append((self._per_chat[(bot_id, chat_key)], self.per_chat_per_second))
        wait = 0.0
        for window, budget in windows:
            # A budget under 1/s (e.g. 20/min for groups) becomes 1 call per 1/budget seconds.
            period = max(1.0, 1.0 / budget)
            capacity = max(1, math.floor(budget * period))
            while window and window[0] <= now - period:
                window.popleft()
            if len(window) >= capacity:
                wait = max(wait, window[0] + period - now)
        if wait > 0:
            self.served_429 += 1
            raise too_many_requests(max(1, math.ceil(wait)))
        for window, _budget in windows:
            window.append(now)

    def stats(self) -> dict[str, Any]:
        return {
            "served_429": self.served_429,
            "global_per_second": self.global_per_second,
            "per_chat_per_second": self.per_chat_per_second,
            "faults": [f.to_json() for f in self.faults if f.remaining > 0],
        }
