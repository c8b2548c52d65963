"""The numbered list the bot last showed a WeChat user (wechat_menu): WeChat has no buttons,
so a reply of "2" is read against it. One row per user, replaced by each new list; stored,
so a worker restart between the list and the reply loses nothing.

A menu is one of:
  rooms    items = [chat_group id, ...]
  plans    items = [plan id, ...]                          (group_id: the room they are for)
  methods  items = [[provider name, currency], ...]        (plan_id: the plan being bought)
  topups   items = [topup_product id, ...]                 (钱包: the top-ups on sale)
  tmethods items = [provider name, ...]                    (of: the top-up being bought)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.models import WechatMenu
from storage.queries import insert_ignore

MenuKind = Literal["rooms", "plans", "methods", "topups", "tmethods"]
KINDS: tuple[MenuKind, ...] = ("rooms", "plans", "methods", "topups", "tmethods")


@dataclass(frozen=True)
class Menu:
    kind: MenuKind
    items: list[Any]
    of: int = 0  # the room (plans), the plan (methods) or the top-up (tmethods) it is about

    def pick(self, number: int) -> Any | None:
        """The item numbered `number` (1-based), or None if there is no such number."""
        return self.items[number - 1] if 1 <= number <= len(self.items) else None


async def save_menu(session: AsyncSession, user_id: int, menu: Menu, now: datetime) -> None:
    choices = {"kind": menu.kind, "items": menu.items, "of": menu.of}
    made = await insert_ignore(
        session,
        WechatMenu,
        {"user_id": user_id, "choices": choices, "updated_at": now},
        conflict=["user_id"],
    )
    if made is None:
        row = (
            await session.execute(select(WechatMenu).where(col(WechatMenu.user_id) == user_id))
        ).scalar_one()
        # A new dict, not an edit of the old one: the JSON column sees assignments only.
        row.choices = choices
        row.updated_at = now


async def load_menu(session: AsyncSession, user_id: int) -> Menu | None:
    choices = (
        await session.execute(
            select(col(WechatMenu.choices)).where(col(WechatMenu.user_id) == user_id)
        )
    ).scalar_one_or_none()
    if not isinstance(choices, dict) or choices.get("kind") not in KINDS:
        return None
    items = choices.get("items")
    of = choices.get("of")
    return Menu(choices["kind"], list(items) if isinstance(items, list) else [], int(of or 0))


async def clear_menu(session: AsyncSession, user_id: int) -> None:
    await session.execute(delete(WechatMenu).where(col(WechatMenu.user_id) == user_id))
