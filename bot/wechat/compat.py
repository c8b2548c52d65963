"""The one place that patches python-wechaty 0.10.7 (unmaintained since 2022) to run here.

Import wechaty's names from this module, never from `wechaty` directly: the patches must be
applied before `wechaty` is first imported, and importing this module applies them. Each patch
says why it exists. Versions are pinned in constraints.txt; a new release of any of these
packages must be checked against this list.

1. `PuppetOptions` has no `__hash__` (a dataclass with eq=True and not frozen), and
   `wechaty.WechatyOptions` uses an instance as a field default. Python 3.11 refuses any
   unhashable dataclass default ("mutable default ... for field puppet_options is not allowed:
   use default_factory", python-wechaty issues #385 and #422), so `import wechaty` fails.
   We give the class identity hashing, which is all the check asks for. The shared default
   instance stays a trap (WechatyOptions writes token and endpoint into it): `connect_options`
   always passes a fresh PuppetOptions.
2. `wechaty.user.url_link` imports `urllib3.get_host`, removed in urllib3 2. requests (used by
   wechatpayv3 and python-alipay-sdk) needs urllib3 2 here, so instead of pinning urllib3<2 we
   put back a `get_host` built on `urllib3.util.parse_url`, same (scheme, host, port) shape.
3. wechaty imports `from pyee import AsyncIOEventEmitter`: pyee 9-11 warn on that name
   (DeprecationWarning on every import) and pyee 12 removed it, keeping the class in
   `pyee.asyncio` with the same interface. We put the name back, so wechaty runs on the
   current pyee (pinned in constraints.txt) instead of a pyee<12 pin.
4. Each `Wechaty` makes its own subclasses of Contact, ContactSelf, Room and Tag (bound to its
   puppet), but their `load()` cache (`_pool`) is one dict on the base class, shared by all:
   after a reconnect `bot.Room.load(id)` returns the object bound to the OLD puppet, whose
   calls fail ("puppet_stub should not be none"), with its stale payload. `listen` gives each
   connection's subclasses pools of their own.
5. Importing wechaty creates $CACHE_DIR, default `.wechaty` in the current directory (the
   plugin module reads it at class definition), where its plugin scheduler would keep a
   job.db: litter in the repository and in the worker's working directory. We default
   CACHE_DIR to a folder under the temp dir (and give the scheduler no job store, below).

6. `PuppetService.room_qr_code(room_id)` asks for the QR code of no room at all: the
   generated gRPC stub's `room_qr_code()` takes no arguments, so the request goes out with an
   empty id (the code says "wechaty-grpc packages has leave out id params") and a service
   answers for the wrong room or refuses. The request message does have the field
   (`RoomQrCodeRequest.id`): we send it with the room's id through the stub's own unary call.
   `Room.qr_code()` goes through it, and the WeChat gateway's invitation fallback needs it.

7. Wechaty's message listener drops any message id it has seen in this process
   (`SingleIdContainer`, a global set forgotten all at once at 100000 ids) and marks it seen
   BEFORE the handler runs: a message whose handler failed would never be applied by the
   puppet's next delivery of it. We dedupe in the database instead (table wechat_message,
   bot/wechat/dispatch.py), where the mark commits with the handler's work; the in-memory
   check is turned off.

Set by `connect_options` rather than patched: every Wechaty runs a plugin manager (a Quart web
server for plugins' routes and an APScheduler) that we do not use. On login it first checks
that its web port (default 5000) is free and fails the login handler if anything listens
there; port 0 can never be "in use", and with no plugin no server is started. Its scheduler
is an in-memory AsyncIOScheduler of our own (no job.db), shut down by `close`.

Not patched, but the worker must know (see docs/wechat.md):
- `Wechaty.start()` never returns while connected (it awaits the event stream), retries a
  dropped connection only after a fixed 60 s sleep, and on a `WechatyPuppetError` (e.g. the
  endpoint does not answer at start) calls `loop.stop()` on the running loop. So we never call
  it: `listen` below runs the same steps and lets every error reach the caller, which
  reconnects with its own backoff (and the worker is its own process all the same).
- The client speaks gRPC without TLS only, and sends the token as the HTTP/2 `:authority`
  header: the puppet service must run with WECHATY_PUPPET_SERVICE_NO_TLS_INSECURE_SERVER=true.
  With an explicit endpoint the token is never looked up at the discovery service.
- `wechaty_puppet_service.utils` imports `telnetlib` (deprecated in 3.11, removed in 3.13) to
  probe the endpoint: this stack cannot move past Python 3.12 without another patch.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from typing import Any

import pyee
import pyee.asyncio
import urllib3
import urllib3.util
from apscheduler.schedulers.asyncio import AsyncIOScheduler

# Patch 5: wechaty's own cache folder, out of the current directory.
CACHE_DIR = os.environ.setdefault(
    "CACHE_DIR", os.path.join(tempfile.gettempdir(), "gatepass-wechaty")
)
# wechaty's loggers write to stderr on handlers of their own, at INFO unless WECHATY_LOG says
# otherwise: every message's text, every contact loaded. Warnings only, unless the operator
# sets WECHATY_LOG=info to debug the connection.
os.environ.setdefault("WECHATY_LOG", "warn")


def _get_host(url: str) -> tuple[str, str | None, int | None]:
    """urllib3 1.x's `get_host`: (scheme, host, port), scheme defaulting to http."""
    parsed = urllib3.util.parse_url(url)
    return parsed.scheme or "http", parsed.host, parsed.port


def _apply() -> None:
    # Patch 3 (see the module docstring): pyee 12 moved AsyncIOEventEmitter to pyee.asyncio;
    # wechaty and wechaty_puppet import it from pyee. First: every later import needs it.
    pyee.AsyncIOEventEmitter = pyee.asyncio.AsyncIOEventEmitter  # type: ignore[attr-defined]
    # Patch 2: urllib3 2 dropped get_host; wechaty.user.url_link imports it.
    if not hasattr(urllib3, "get_host"):
        urllib3.get_host = _get_host  # type: ignore[attr-defined]
    from wechaty_puppet.schemas.puppet import PuppetOptions

    # Patch 1: identity hash, so Python 3.11 accepts WechatyOptions' default instance.
    if PuppetOptions.__hash__ is None:
        PuppetOptions.__hash__ = object.__hash__
    # Patch 6: the room's id in RoomQRCode requests.
    from wechaty_puppet_service.puppet import PuppetService

    PuppetService.room_qr_code = _room_qr_code  # type: ignore[method-assign]
    # Patch 7: no in-memory message dedupe (the database's is the one that holds).
    from wechaty.utils.async_helper import SingleIdContainer

    SingleIdContainer.exist = _never_seen


def _never_seen(self: Any, message_id: str) -> bool:
    """SingleIdContainer.exist, turned off (patch 7)."""
    return False


async def _room_qr_code(self: Any, room_id: str) -> str:
    """PuppetService.room_qr_code with the room's id in the request (patch 6)."""
    # (wechaty_grpc, generated by betterproto, ships no type information)
    from wechaty_grpc.wechaty.puppet import (  # type: ignore[import-untyped]
        RoomQrCodeRequest,
        RoomQrCodeResponse,
    )

    response = await self.puppet_stub._unary_unary(
        "/wechaty.Puppet/RoomQRCode", RoomQrCodeRequest(id=room_id), RoomQrCodeResponse
    )
    return str(response.qrcode)


_apply()

# Only now may wechaty be imported (ruff would hoist these above _apply() without the noqa).
from wechaty import (  # noqa: E402
    Contact,
    FileBox,
    Message,
    Room,
    Wechaty,
    WechatyOptions,
)
from wechaty_puppet import MessageType, WechatyPuppetError  # noqa: E402
from wechaty_puppet.schemas.puppet import PuppetOptions  # noqa: E402

__all__ = [
    "Contact",
    "FileBox",
    "Message",
    "MessageType",
    "PuppetOptions",
    "Room",
    "Wechaty",
    "WechatyOptions",
    "WechatyPuppetError",
    "close",
    "connect_options",
    "listen",
    "probe",
]


def connect_options(endpoint: str, token: str, name: str = "gatepass") -> WechatyOptions:
    """Options for a puppet service at `endpoint` ("host:port"), each call a fresh set.

    A fresh PuppetOptions every time: the class default is one shared instance (patch 1).
    """
    puppet_options = PuppetOptions(token=token, end_point=endpoint)
    return WechatyOptions(
        name=name,
        puppet="wechaty-puppet-service",
        puppet_options=puppet_options,
        token=token,
        endpoint=endpoint,
        # The unused plugin web server: a port its "in use" check never fails (see above).
        host="127.0.0.1",
        port=0,
        scheduler=AsyncIOScheduler(),
    )


async def listen(bot: Wechaty, on_puppet: Callable[[Any], None] | None = None) -> None:
    """Connect `bot` and dispatch its events until the connection ends; errors propagate.

    The steps of `Wechaty.start()` without its error handling (60 s sleep-and-retry, or
    `loop.stop()`): a dropped stream raises here (grpclib's StreamTerminatedError or
    GRPCError, or OSError), and a clean end of the stream returns. The caller decides when
    to connect again: a new `Wechaty` each time, since a used one keeps the old puppet's
    caches and listeners.

    `on_puppet` is given the connection's puppet before its events flow, to listen to them
    raw (`puppet.on(name, listener)`, payloads of ids): python-wechaty's own events first
    load every contact and room named, and drop the event if one cannot be loaded.
    """
    await bot.init_puppet()
    # Patch 4: this connection's own load() caches (init_puppet made new subclasses).
    for user_class in (bot.Contact, bot.ContactSelf, bot.Room, bot.Tag):
        user_class._pool = {}
    await bot.init_puppet_event_bridge(bot.puppet)
    if on_puppet is not None:
        on_puppet(bot.puppet)  # the caller's own listeners on the puppet's raw events
    bot.started = True
    try:
        await bot.puppet.start()  # returns when the event stream ends
    finally:
        bot.started = False


async def close(bot: Wechaty, timeout: float = 5) -> None:
    """Let go of a connection, live or dead, without raising.

    `Wechaty.stop()` asks the service to stop the puppet before closing the channel; when the
    service is gone that call fails and the channel stays open. Here the channel is closed
    in any case.
    """
    scheduler = bot._plugin_manager.scheduler
    if scheduler.running:
        scheduler.shutdown(wait=False)
    puppet = bot._puppet
    if puppet is None:
        return
    try:
        async with asyncio.timeout(timeout):
            await bot.stop()
    # A dead connection fails in any of grpclib's, asyncio's or wechaty's ways; all that is
    # left to do then is to close the channel.
    except Exception:  # noqa: BLE001
        if puppet.channel is not None:
            puppet.channel.close()
            puppet.channel = None
        bot._puppet = None
        bot.started = False


async def probe(endpoint: str, token: str) -> str:
    """The version of the puppet service at `endpoint` ("host:port"), asked with `token`:
    it answers, and takes the token (a wrong one is GRPCError UNAUTHENTICATED). Starts and
    stops nothing, so it is safe beside a running worker (`config check --online`)."""
    from grpclib.client import Channel
    from wechaty_grpc.wechaty import PuppetStub  # type: ignore[import-untyped]

    host, _, port = endpoint.rpartition(":")
    channel = Channel(host=host, port=int(port))
    channel._authority = token  # as python-wechaty sends it (see the module docstring)
    try:
        return str((await PuppetStub(channel).version()).version)
    finally:
        channel.close()
