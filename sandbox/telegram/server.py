"""The HTTP server: Bot API at /bot{token}/{method}, files at /file/bot{token}/{path},
control API at /control/... (control.py). `TelegramEmulator` runs it in-process."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
from aiohttp import web

from . import channel_control, channels, control, playground
from .api import Call, lookup
from .api.registry import canonical_names
from .errors import ApiError
from .guard import Fault
from .params import Params
from .state import BotAccount
from .webhook import WebhookDeliverer
from .world import CallRecord, World

log = logging.getLogger(__name__)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


class TelegramEmulator:
    """An in-process Telegram Bot API emulator.

    emulator = TelegramEmulator()
    base_url = await emulator.start()          # "http://127.0.0.1:PORT"
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))
    ...
    await emulator.stop()
    """

    def __init__(
        self,
        *,
        bot_username: str = "gatepass_bot",
        bot_first_name: str = "Gatepass",
        webhook_retry_delay: float = 0.2,
    ) -> None:
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.webhook_retry_delay = webhook_retry_delay
        self.world = self._new_world()
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._deliverers: dict[int, WebhookDeliverer] = {}
        self._call_seq = 0
        # The playground page (GET /playground) borrows these from whoever wires the service.
        self.playground = playground.PlaygroundHooks()

    def _new_world(self) -> World:
        return World(bot_username=self.bot_username, bot_first_name=self.bot_first_name)

    # --- lifecycle --------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._bot_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        control.setup_routes(app, self)
        channel_control.setup_routes(app, self)
        playground.setup_routes(app, self)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        # A short shutdown timeout: waiting long polls are woken on stop() anyway.
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError:  # the port is taken: leave nothing open behind
            await self._runner.cleanup()
            self._runner = None
            raise
        self._session = aiohttp.ClientSession()
        bound_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        await self._stop_deliverers()
        self.world.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def reset(self) -> None:
        """Forget everything (users, chats, bots, updates, clock, limits)."""
        await self._stop_deliverers()
        self.world.close()
        self.world = self._new_world()
        self._call_seq = 0

    async def __aenter__(self) -> TelegramEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- webhooks ---------------------------------------------------------------------------

    async def _webhook_changed(self, bot: BotAccount) -> None:
        old = self._deliverers.pop(bot.id, None)
        if old is not None:
            await old.stop()
        if bot.webhook_url and self._session is not None:
            deliverer = WebhookDeliverer(
                bot,
                self._session,
                self.world.clock,
                self._run_reply,
                retry_delay=self.webhook_retry_delay,
            )
            self._deliverers[bot.id] = deliverer
            deliverer.start()

    async def _stop_deliverers(self) -> None:
        for deliverer in list(self._deliverers.values()):
            await deliverer.stop()
        self._deliverers.clear()

    async def _run_reply(self, bot: BotAccount, params: Params) -> None:
        """A method returned in a webhook response runs like a normal call (result unseen)."""
        await self.execute(bot, str(params.values.get("method")), params)

    # --- Bot API ----------------------------------------------------------------------------

    async def _bot_api(self, request: web.Request) -> web.StreamResponse:
        try:
            bot = self.world.bot_for_token(request.match_info["token"])
        except ApiError as exc:
            return _json(exc.envelope(), exc.code)
        found = lookup(request.match_info["method"])
        if found is None:
            return _json({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        try:
            params = await Params.from_request(request)
        except ApiError as exc:
            return _json(exc.envelope(), exc.code)
        fault = self.world.guard.take_fault(found[0], params.string("chat_id"))
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.raw_body is not None and fault.when == "before":
            self._log(bot, found[0], params, fault.error())
            return web.Response(
                text=fault.raw_body, status=fault.error_code, content_type="text/html"
            )
        outcome = await self.execute(bot, found[0], params, fault=fault)
        if isinstance(outcome, ApiError):
            return _json(outcome.envelope(), outcome.code)
        if fault is not None and fault.when == "after":
            # The call took effect, but the client sees a failure (a lost response).
            if fault.raw_body is not None:
                return web.Response(
                    text=fault.raw_body, status=fault.error_code, content_type="text/html"
                )
            return _json(fault.error().envelope(), fault.error_code)
        return _json({"ok": True, "result": outcome})

    async def execute(
        self, bot: BotAccount, method_name: str, params: Params, fault: Fault | None = None
    ) -> Any:
        """Run one Bot API method; returns the result, or the ApiError it failed with."""
        found = lookup(method_name)
        if found is None:
            return ApiError(404, "Not Found")
        canonical, handler = found
        call = Call(
            world=self.world,
            bot=bot,
            params=params,
            method=canonical,
            webhook_changed=self._webhook_changed,
        )
        try:
            if fault is not None and fault.when == "before":
                raise fault.error()
            # Star subscriptions whose period ran out end before the bot sees the world.
            channels.expire_subscriptions(self.world)
            chat_key = params.string("chat_id")
            self.world.guard.check_rate(bot.id, canonical, chat_key)
            result = await handler(call)
        except ApiError as exc:
            self._log(bot, canonical, params, exc)
            return exc
        self._log(bot, canonical, params, None)
        return result

    def _log(self, bot: BotAccount, method: str, params: Params, error: ApiError | None) -> None:
        self._call_seq += 1
        self.world.calls.append(
            CallRecord(
                seq=self._call_seq,
                at=self.world.clock.now(),
                bot_id=bot.id,
                method=method,
                params=params.loggable(),
                ok=error is None,
                error_code=None if error is None else error.code,
                description=None if error is None else error.description,
            )
        )

    async def _file(self, request: web.Request) -> web.StreamResponse:
        try:
            self.world.bot_for_token(request.match_info["token"])
        except ApiError as exc:
            return _json(exc.envelope(), exc.code)
        path = request.match_info["path"]
        stored = next((f for f in self.world.files.values() if f.file_path == path), None)
        if stored is None:
            return _json({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        return web.Response(
            body=stored.content, content_type=stored.mime_type or "application/octet-stream"
        )

    def canonical_methods(self) -> dict[str, str]:
        return canonical_names()
