"""The method table and what a handler gets: the world, the calling bot and its parameters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..params import Params
from ..state import BotAccount
from ..world import World


@dataclass
class Call:
    world: World
    bot: BotAccount
    params: Params
    method: str
    # Set by the server so setWebhook/deleteWebhook can start or stop delivery.
    webhook_changed: Callable[[BotAccount], Awaitable[None]] | None = None


Handler = Callable[[Call], Awaitable[Any]]

# lower-case name -> (canonical name, handler)
METHODS: dict[str, tuple[str, Handler]] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        METHODS[name.lower()] = (name, handler)
        return handler

    return register


def lookup(name: str) -> tuple[str, Handler] | None:
    return METHODS.get(name.lower())


def canonical_names() -> dict[str, str]:
    return {key: canonical for key, (canonical, _h) in METHODS.items()}
