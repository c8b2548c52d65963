"""What the outbox worker does for each kind of row. Each handler calls the platform through
the ChatGateway and keeps its own short DB transactions: no connection is held while waiting
on the network. A gateway error propagates so the worker can retry or give up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from membership.admin import display_name
from membership.gateway import AddOutcome, Button, ChatGateway, RejectedError
from membership.grants import is_active
from membership.invites import usable_invite
from storage.db import Database
from storage.models import ChatGroup, Invite, Membership, Outbox, User, table
from storage.outbox import ClaimedRow, settle_done_in


@dataclass
class DeliveryContext:
    db: Database
    gateway: ChatGateway | None  # None for rows that are provider calls
    now: datetime
    invite_ttl: timedelta
    providers: Mapping[str, Any] = field(default_factory=dict)  # billing/provider_calls.py
    # The outbox row being delivered, for a handler that settles it in its own last unit of
    # work (storage/outbox.settle_done_in); `settled` then tells the worker not to settle it
    # again. Its attempts are read when that unit runs: the worker updates them when the
    # row's lease ran out and it was claimed again meanwhile.
    row: ClaimedRow | None = None
    settled: bool = False

    @property
    def chat(self) -> ChatGateway:
        """The gateway of a row for a chat platform (only provider-call rows have none)."""
        if self.gateway is None:
            raise RuntimeError("a chat platform row reached a worker without a chat gateway")
        return self.gateway


Handler = Callable[[DeliveryContext, dict[str, Any]], Awaitable[None]]


_M, _G, _U, _I, _O = (
    table(Membership),
    table(ChatGroup),
    table(User),
    table(Invite),
    table(Outbox),
)
# Core statements built once: every paid order runs them (units of work; on SQLite these
# run whole on the database thread through storage/fastexec.py).
_TARGET = (
    select(
        _M.c.id,
        _M.c.status,
        _M.c.expires_at,
        _M.c.user_id,
        _G.c.active,
        _G.c.invite_mode,
        _G.c.chat_id,
        _G.c.title,
        _G.c.platform.label("group_platform"),
        _G.c.owner_user_id,
        _U.c.platform,
        _U.c.platform_user_id,
        _U.c.language,
    )
    .select_from(_M.join(_G, _G.c.id == _M.c.chat_group_id).join(_U, _U.c.id == _M.c.user_id))
    .where(_M.c.id == bindparam("membership_id"))
)
_INVITE_INSERT = insert(_I)
_OUTBOX_INSERT = insert(_O)


async def deliver_invite(ctx: DeliveryContext, payload: dict[str, Any]) -> None:
    """Get the buyer in: on Telegram an invite only they can use, on WeChat (invite_mode
    add_member) an add to the room; then queue the message that says so.

    The membership's unused, unexpired, unrevoked invite is sent again rather than a second
    one made: a delivery cut short after the link was stored (a kill before the row was
    settled) runs again and must not hand the buyer two links. The link is stored in the
    same transaction that queues its message, so no message carries a link we forgot. An add
    run again finds the buyer in the room already (ALREADY_MEMBER) and says the same."""
    if "chat_id" in payload:  # a busy chat: back to the queue before any database work
        ctx.chat.check_budget(str(payload["chat_id"]))
    membership_id = int(payload["membership_id"])

    async def read(s: AsyncSession) -> tuple[Any, Any]:
        row = (await s.execute(_TARGET, {"membership_id": membership_id})).first()
        if row is None:
            return None, None
        return row, await usable_invite(s, membership_id, ctx.now)

    target, existing = await ctx.db.unit(read)
    if target is None:
        return
    if not is_active(target, ctx.now) or not target.active:
        return  # revoked or lapsed before we got here: nothing to deliver
    if target.platform != ctx.chat.platform:
        # Parked access moved to the buyer's linked account since this row was queued (a
        # /link in between): the move queued its own delivery on that account's platform.
        return
    new_invite: dict[str, Any] | None = None
    in_room = False  # added (or found) in a WeChat room: checked again below
    if target.group_platform != target.platform:
        # Parked: bought on one platform for a group on the other, with no linked account
        # there yet. No chat call can reach them; /link moves the access and delivers it.
        messages = [
            _notice(
                target, "link_needed", {"group": target.title, "platform": target.group_platform}
            )
        ]
    elif target.invite_mode == "add_member":
        messages, in_room = await _add_to_room(ctx, target, bool(payload.get("paid", True)))
    else:
        message, new_invite = await _invite(ctx, target, existing, payload)
        messages = [(target.platform, message)]

    async def store(s: AsyncSession) -> bool:
        if new_invite is not None:
            await s.execute(_INVITE_INSERT, new_invite)
        work: list[tuple[str, str, dict[str, Any]]] = [
            ("notify", platform, message) for platform, message in messages
        ]
        if in_room and not await _still_active(s, membership_id, ctx.now):
            # Ended (a refund, dispute, /revoke) while the add was on its way: that end's
            # removal may have run first and found no one to remove, so the buyer just
            # added would stay in the room unpaid. Remove them again; say nothing of an add.
            work = [
                (
                    "remove_member",
                    target.platform,
                    {"chat_id": target.chat_id, "user_id": target.platform_user_id},
                )
            ]
        rows = [
            {
                "kind": kind,
                "platform": platform,
                "payload": message,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": ctx.now,
                "created_at": ctx.now,
            }
            for kind, platform, message in work
        ]
        # One row (the usual case) as a plain insert, not an executemany.
        await s.execute(_OUTBOX_INSERT, rows[0] if len(rows) == 1 else rows)
        # A claim that is no longer ours (claimed again since) is left to the worker's
        # own settle, which compares with the newest claim.
        return ctx.row is not None and await settle_done_in(s, ctx.row.id, ctx.row.attempts)

    ctx.settled = await ctx.db.unit(store)


async def _still_active(s: AsyncSession, membership_id: int, now: datetime) -> bool:
    row = (
        await s.execute(select(_M.c.status, _M.c.expires_at).where(_M.c.id == membership_id))
    ).first()
    return row is not None and is_active(row, now)


def _notice(target: Any, key: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(platform, notify payload) of a message to the membership's user."""
    return target.platform, {
        "user_id": target.platform_user_id,
        "key": key,
        "params": params,
        "language": target.language,
    }


def _until(target: Any) -> str | None:
    return target.expires_at.isoformat() if target.expires_at else None


async def _invite(
    ctx: DeliveryContext, target: Any, existing: Any, payload: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The invite message, and the invite row to store when a new link was made."""
    join_request = target.invite_mode == "join_request"
    new_invite = None
    if existing is not None:
        link = existing.link
    else:
        # Join-request links are approved per user; both kinds expire with invite_ttl.
        expire_at = ctx.now + ctx.invite_ttl
        link = await ctx.chat.create_invite(
            target.chat_id,
            name=f"gatepass m{target.id}",
            join_request=join_request,
            expire_at=expire_at,
        )
        new_invite = {
            "membership_id": target.id,
            "link": link,
            "expires_at": expire_at,
            "used_by": None,
            "revoked": False,
            "created_at": ctx.now,
        }
    if payload.get("replaced"):
        key = "invite_single_replaced"
    else:
        # Thanks for a payment only when there was one (not an owner's grant or import).
        key = ("invite_request" if join_request else "invite_single") + (
            "" if payload.get("paid", True) else "_given"
        )
    _, message = _notice(
        target, key, {"group": target.title, "link": link, "until": _until(target)}
    )
    message["buttons"] = [{"text_key": "btn_join", "url": link, "params": {"group": target.title}}]
    return message, new_invite


async def _add_to_room(
    ctx: DeliveryContext, target: Any, paid: bool
) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """Add the buyer to the WeChat room; (the messages, whether the buyer is in the room now).
    A room that takes no direct add has had the buyer sent its join code by the gateway
    (INVITED): the buyer is told to scan it, and the owner that someone paid and may need
    their confirmation to get in."""
    outcome = await ctx.chat.add_member(target.chat_id, target.platform_user_id)
    invited = outcome is AddOutcome.INVITED
    key = ("room_invited" if invited else "room_added") + ("" if paid else "_given")
    messages = [_notice(target, key, {"group": target.title, "until": _until(target)})]
    if invited:

        async def read(s: AsyncSession) -> tuple[Any, Any]:
            owner = (
                await s.execute(
                    select(_U.c.platform, _U.c.platform_user_id, _U.c.language).where(
                        _U.c.id == target.owner_user_id
                    )
                )
            ).first()
            buyer = await s.get(User, target.user_id)
            return owner, buyer

        owner, buyer = await ctx.db.unit(read)
        if owner is not None and buyer is not None:
            messages.append(
                (
                    owner.platform,
                    {
                        "user_id": owner.platform_user_id,
                        "key": "owner_room_invited",
                        "params": {"group": target.title, "buyer": display_name(buyer)},
                        "language": owner.language,
                    },
                )
            )
    return messages, not invited


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
