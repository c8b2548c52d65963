"""Bot API method handlers, registered by name (matched case-insensitively, as Telegram does).

Each handler takes a `Call` and returns the `result` value or raises ApiError.
"""

from __future__ import annotations

from . import channels, chats, core, invites, messages, payments, stars  # noqa: F401  (registration)
from .registry import METHODS, Call, Handler, lookup

__all__ = ["METHODS", "Call", "Handler", "lookup"]
