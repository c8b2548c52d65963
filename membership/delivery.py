"""What the outbox worker does for each kind of row. Each handler calls the platform through
the ChatGateway and keeps its own short DB transactions: no connection is held while waiting
on the network. A gateway error propagates so the worker can retry or give up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from membership.gateway import Button, ChatGateway, RejectedError
from membership.grants import is_active
from membership.invites import usable_invite
from storage.db import Database
from storage.models import ChatGroup, Invite, Membership, User, stored_id
from storage.queries import enqueue


@dataclass
class DeliveryContext:
    db: Database
    gateway: ChatGateway | None  # None for rows that are provider calls
    now: datetime
    invite_ttl: timedelta
    providers: Mapping[str, Any] = field(default_factory=dict)  # billing/provider_calls.py

    @property
    def chat(self) -> ChatGateway:
        """The gateway of a row for a chat platform (only provider-call rows have none)."""
        if self.gateway is None:
            raise RuntimeError("a chat platform row reached a worker without a chat gateway")
        return self.gateway


Handler = Callable[[DeliveryContext, dict[str, Any]], Awaitable[None]]


async def deliver_invite(ctx: DeliveryContext, payload: dict[str, Any]) -> None:
    """Send the buyer an invite only they can use, and queue the message with it.

    The membership's unused, unexpired, unrevoked invite is sent again rather than a second
    one made: a delivery cut short after the link was stored (a kill before the row was
    settled) runs again and must not hand the buyer two links."""
    if "chat_id" in payload:  # a busy chat: back to the queue before any database work
        ctx.chat.check_budget(str(payload["chat_id"]))
    async with ctx.db.session() as s:
        row = (
            await s.execute(
                select(Membership, ChatGroup, User)
                .join(ChatGroup, col(ChatGroup.id) == col(Membership.chat_group_id))
                .join(User, col(User.id) == col(Membership.user_id))
                .where(col(Membership.id) == int(payload["membership_id"]))
            )
        ).first()
        existing = await usable_invite(s, stored_id(row[0]), ctx.now) if row is not None else None
    if row is None:
        return
    m, group, user = row
    if not is_active(m, ctx.now) or not group.active:
        return  # revoked or lapsed before we got here: nothing to deliver
    join_request = group.invite_mode == "join_request"
    if existing is not None:
        link, expire_at = existing.link, existing.expires_at
    else:
        # Join-request links are approved per user; both kinds expire with invite_ttl.
        expire_at = ctx.now + ctx.invite_ttl
        link = await ctx.chat.create_invite(
            group.chat_id, name=f"gatepass m{m.id}", join_request=join_request, expire_at=expire_at
        )
    if payload.get("replaced"):
        key = "invite_single_replaced"
    else:
        # Thanks for a payment only when there was one (not an owner's grant or import).
        key = ("invite_request" if join_request else "invite_single") + (
            "" if payload.get("paid", True) else "_given"
        )
    async with ctx.db.transaction() as s:
        if existing is None:
            s.add(
                Invite(
                    membership_id=stored_id(m), link=link, expires_at=expire_at, created_at=ctx.now
                )
            )
        enqueue(
            s,
            "notify",
            user.platform,
            {
                "user_id": user.platform_user_id,
                "key": key,
                "params": {
                    "group": group.title,
                    "link": link,
                    "until": m.expires_at.isoformat() if m.expires_at else None,
                },
                "language": user.language,
                "buttons": [
                    {"text_key": "btn_join", "url": link, "params": {"group": group.title}}
                ],
            },
            ctx.now,
        )


async def approve_join(ctx: DeliveryContext, payload: dict[str, Any]) -> None:
    try:
        await ctx.chat.approve_join(payload["chat_id"], payload["user_id"])
    except RejectedError as e:
        if "HIDE_REQUESTER_MISSING" in str(e) or "USER_ALREADY_PARTICIPANT" in str(e):
            return  # already handled (by us earlier, or by a chat admin): done
        raise


async def decline_join(ctx: DeliveryContext, payload: dict[str, Any]) -> None:
    try:
        await ctx.chat.decline_join(payload["chat_id"], payload["user_id"])
    except RejectedError as e:
        if "HIDE_REQUESTER_MISSING" in str(e):
            return
        raise


async def remove_member(ctx: DeliveryContext, payload: dict[str, Any]) -> None:
    await ctx.chat.remove_member(payload["chat_id"], payload["user_id"])


async def revoke_invite(ctx: DeliveryContext, payload: dict[str, Any]) -> None:
    try:
        await ctx.chat.revoke_invite(payload["chat_id"], payload["link"])
    except RejectedError as e:
        if "INVITE_HASH_EXPIRED" in str(e) or "not found" in str(e).lower():
            return  # already gone: that is what we wanted
        raise


async def reply(ctx: DeliveryContext, payload: dict[str, Any]) -> None:
    """A handler's reply that could not go out right after its update committed."""
    await ctx.chat.send_prepared(str(payload["chat_id"]), payload["call"])


async def notify(ctx: DeliveryContext, payload: dict[str, Any]) -> None:
    language = payload.get("language")
    if language is None:
        async with ctx.db.session() as s:
            language = (
                await s.execute(
                    select(col(User.language)).where(
                        col(User.platform) == ctx.chat.platform,
                        col(User.platform_user_id) == payload["user_id"],
                    )
                )
            ).scalar_one_or_none()
    buttons = [Button(**b) for b in payload.get("buttons") or []]
    await ctx.chat.send(
        payload["user_id"], payload["key"], payload.get("params") or {}, language, buttons or None
    )


HANDLERS: dict[str, Handler] = {
    "deliver_invite": deliver_invite,
    "approve_join": approve_join,
    "decline_join": decline_join,
    "remove_member": remove_member,
    "revoke_invite": revoke_invite,
    "notify": notify,
    "reply": reply,
}
