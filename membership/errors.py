"""Rule violations carry a message-catalog key so the bot can say them in the user's language."""

from __future__ import annotations

from typing import Any


class RuleError(Exception):
    """A request a rule refuses; nothing was changed. `key` names a catalog message."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(f"{key} {params}" if params else key)
        self.key = key
        self.params = params
