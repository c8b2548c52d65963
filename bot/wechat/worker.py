"""The WeChat worker (`gatepass wechat`): one connection to the puppet service at a time,
the outbox rows of platform `wechat`, and the bot's events turned into service calls.

- Connection: a new `Wechaty` per attempt through bot/wechat/compat.listen (never
  `Wechaty.start()`, which sleeps 60 s or stops the loop, see docs/wechat.md); after it ends
  or fails, the next attempt waits 1 s, 2 s, 4 s ... up to 60 s, back to 1 s once a
  connection had logged in.
- Outbox: an OutboxWorker claiming only `wechat` rows, run while the bot is logged in. While
  disconnected nobody claims them, so rows queued meanwhile (expiry removals, notices, the
  replies of messages handled just before the drop) wait without burning attempts, and go
  out after the next login. A row in flight when the connection drops fails with
  TransientError and is retried. A logout ends the connection too (a Wechaty hears one
  login only): the next connection hears the account's next login.
- Events: a text message (not the bot's own) becomes an Incoming for bot/wechat/dispatch.py;
  a room-join (heard from the puppet itself, by ids) runs the join guard
  (membership.joins.on_member_joined) for each newcomer but the bot, in one transaction.

The wiring (settings, the outbox worker, the conversation handler) is gatepass/wechat.py's:
bot/ imports neither gatepass/ nor scheduler/ (the package graph of docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from bot.wechat.compat import MessageType, Wechaty, close, connect_options, listen
from bot.wechat.dispatch import Dispatcher, MessageHandler, prune_messages
from bot.wechat.events import Incoming, RoomJoined
from bot.wechat.gateway import WechatGateway
from membership.joins import on_member_joined
from storage.clock import Clock
from storage.db import Database

log = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
PRUNE_EVERY = 3600.0  # seconds between prunings of the applied message ids

# Given the bot's own contact id (known once logged in): the handler for its messages.
HandlerFactory = Callable[[str], MessageHandler]


class Deliveries(Protocol):
    """The outbox worker (scheduler/outbox.OutboxWorker) as the WeChat worker drives it."""

    async def run_forever(self, interval: float) -> None: ...

    def wake(self) -> None: ...


class WechatWorker:
    """`gateway` is the one `outbox` delivers through; `handler_for` gives the conversation
    handler for the logged-in bot's id."""

    def __init__(
        self,
        endpoint: str,
        token: str,
        db: Database,
        clock: Clock,
        *,
        gateway: WechatGateway,
        outbox: Deliveries,
        handler_for: HandlerFactory,
        outbox_interval: float = 0.5,
        first_backoff: float = FIRST_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.endpoint, self._token = endpoint, token
        self.db, self.clock = db, clock
        self.gateway, self.outbox, self.handler_for = gateway, outbox, handler_for
        self.outbox_interval = outbox_interval
        self.first_backoff, self.max_backoff = first_backoff, max_backoff
        self.dispatcher: Dispatcher | None = None
        self.connected = asyncio.Event()  # set while logged in
        self.bot_id: str | None = None
        self.connections = 0  # logins so far (a reconnect makes it 2)
        self.joins_failed = 0
        self._stopping = asyncio.Event()
        self._bot: Wechaty | None = None  # the connection being listened to
        self._listening: asyncio.Task[None] | None = None
        self._outbox_task: asyncio.Task[None] | None = None
        self._events: set[asyncio.Task[Any]] = set()
        self._sender_locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @property
    def logged_in(self) -> bool:
        return self.connected.is_set()

    def wake_outbox(self) -> None:
        self.outbox.wake()

    # -- the connection -------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, and connect again after every drop, until stop()."""
        self._stopping.clear()
        pruning = asyncio.create_task(self._prune_forever())
        delay = self.first_backoff
        try:
            while not self._stopping.is_set():
                logins_before = self.connections
                try:
                    await self._connect_once()
                    if not self._stopping.is_set():
                        log.warning("WeChat: the puppet service ended the connection")
                except Exception as e:  # noqa: BLE001 - any failure: wait, then connect again
                    log.warning("WeChat: connection to %s failed: %r", self.endpoint, e)
                if self._stopping.is_set():
                    log.info("WeChat: stopped")
                    break
                if self.connections > logins_before:
                    delay = self.first_backoff  # that one worked: start the backoff over
                log.info("WeChat: connecting again in %.0f s", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, self.max_backoff)
        finally:
            pruning.cancel()
            await asyncio.gather(pruning, return_exceptions=True)
            await self._logged_out()
            events = list(self._events)
            for task in events:
                task.cancel()
            await asyncio.gather(*events, return_exceptions=True)

    def stop(self) -> None:
        """End run(): the connection closes, rows in delivery are handed back."""
        self._stopping.set()
        if self._listening is not None:
            self._listening.cancel()

    async def _connect_once(self) -> None:
        bot = Wechaty(connect_options(self.endpoint, self._token))
        bot.on("login", lambda contact: self._spawn(self._on_login(bot, contact)))
        bot.on("logout", lambda _contact: self._spawn(self._on_logout(bot)))
        bot.on("message", lambda msg: self._spawn(self._on_message(bot, msg)))
        self._bot = bot
        self._listening = asyncio.create_task(listen(bot, self._listen_raw))
        try:
            await asyncio.wait([self._listening])
            if not self._listening.cancelled():
                self._listening.result()  # the connection's error, if it ended with one
        finally:
            self._bot, self._listening = None, None
            await self._logged_out()
            await close(bot)

    def _spawn(self, work: Any) -> None:
        """Run an event's handling as a task of ours (kept, so stop() can end it)."""
        task = asyncio.create_task(work)
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def _on_login(self, bot: Wechaty, contact: Any) -> None:
        self.bot_id = str(contact.contact_id)
        self.dispatcher = Dispatcher(
            self.db, self.clock, self.handler_for(self.bot_id), self.wake_outbox
        )
        self.gateway.bot = bot
        self.connections += 1
        if self._outbox_task is None:
            self._outbox_task = asyncio.create_task(self.outbox.run_forever(self.outbox_interval))
        self.connected.set()
        log.info("WeChat: logged in as %s at %s", self.bot_id, self.endpoint)

    async def _on_logout(self, bot: Wechaty) -> None:
        """The account logged out, the connection stays: end it all the same. A Wechaty
        hears `login` once in its life, so the next login would go unseen (nothing
        delivered until the connection happened to drop); a new connection hears it.
        A logout of an earlier connection (closing it says one) is not this one's."""
        if bot is not self._bot:
            return
        await self._logged_out()
        if self._listening is not None:
            self._listening.cancel()

    async def _logged_out(self) -> None:
        """The connection is gone (or logged out): stop delivering until the next login."""
        self.connected.clear()
        self.gateway.bot = None
        task, self._outbox_task = self._outbox_task, None
        if task is not None:
            await _cancel(task)  # rows in delivery are handed back (OutboxWorker._process)

    async def _prune_forever(self) -> None:
        while True:
            try:
                await prune_messages(self.db, self.clock.now())
            except Exception:  # the database may be restarting: next time
                log.exception("WeChat: pruning applied message ids failed")
            await asyncio.sleep(PRUNE_EVERY)

    # -- events ---------------------------------------------------------------------------

    async def _on_message(self, bot: Wechaty, msg: Any) -> None:
        try:
            if msg.is_self() or msg.type() != MessageType.MESSAGE_TYPE_TEXT:
                return
            talker = msg.talker()
            async with self._in_turn(str(talker.contact_id)):
                incoming = await self._incoming(bot, msg, talker)
                if self.dispatcher is not None:
                    await self.dispatcher.apply(incoming)
        except Exception:
            log.exception("WeChat: a message event could not be handled")

    @contextlib.asynccontextmanager
    async def _in_turn(self, sender: str) -> AsyncIterator[None]:
        """One sender's messages are applied in the order they came (a menu, then the number
        picked from it); different senders go on at the same time. A sender's lock lives
        while any of their messages holds or waits for it."""
        lock, users = self._sender_locks.get(sender, (asyncio.Lock(), 0))
        self._sender_locks[sender] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._sender_locks[sender]
            if users > 1:
                self._sender_locks[sender] = (lock, users - 1)
            else:
                del self._sender_locks[sender]

    async def _incoming(self, bot: Wechaty, msg: Any, talker: Any) -> Incoming:
        room = msg.room()
        message_id, sender_id = str(msg.message_id), str(talker.contact_id)
        name, text = str(talker.name or talker.contact_id), str(msg.text())
        if room is None:
            return Incoming(message_id, sender_id, name, text)
        # Who owns and administers the room now (not the payload cached at login).
        payload = await bot.puppet.room_payload(room.room_id)
        return Incoming(
            message_id,
            sender_id,
            name,
            text,
            room_id=str(room.room_id),
            room_topic=str(payload.topic),
            room_owner_id=str(payload.owner_id) or None,
            room_admin_ids=tuple(str(a) for a in payload.admin_ids),
            room_member_count=len(payload.member_ids),
        )

    def _listen_raw(self, puppet: Any) -> None:
        """room-join from the puppet itself (ids): python-wechaty's `room-join` first loads
        the room, every newcomer and the inviter, and drops the event when the puppet has no
        contact payload for one (a stranger to the bot, no inviter named): the guard, which
        needs the ids only, would never run and an intruder would stay."""
        puppet.on("room-join", lambda payload: self._spawn(self._on_room_join(payload)))

    async def _on_room_join(self, payload: Any) -> None:
        joined = RoomJoined(
            room_id=str(payload.room_id),
            invitee_ids=tuple(str(c) for c in payload.invited_ids),
            inviter_id=str(payload.inviter_id) if payload.inviter_id else None,
        )
        try:
            await self.guard(joined)
        except Exception:
            self.joins_failed += 1
            log.exception("WeChat: the join guard failed for %s", joined)

    async def guard(self, joined: RoomJoined) -> None:
        """The join guard for everyone who appeared in a room, the bot excepted."""
        newcomers = [c for c in joined.invitee_ids if c != self.bot_id]
        if not newcomers:
            return
        now = self.clock.now()
        async with self.db.transaction() as session:
            for contact_id in newcomers:
                outcome = await on_member_joined(
                    session, "wechat", joined.room_id, contact_id, None, now
                )
                log.info("WeChat: %s joined %s: %s", contact_id, joined.room_id, outcome)
        self.wake_outbox()


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for its end. Python 3.11's asyncio.wait_for loses a cancel
    that arrives as its inner wait completes (fixed in 3.12), and the outbox worker idles in
    one: a cancel that was lost is sent again."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1.0)
    if not task.cancelled() and task.exception() is not None:
        log.error("WeChat: the outbox worker had failed", exc_info=task.exception())
