"""getMe, polling, webhooks, commands and files."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlparse

from ..errors import ApiError, bad_request
from .registry import Call, method

WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
    "delete the webhook first"
)
SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")


@method("getMe")
async def get_me(call: Call) -> dict[str, Any]:
    return call.bot.get_me()


@method("logOut")
async def log_out(call: Call) -> bool:
    return True


@method("close")
async def close(call: Call) -> bool:
    return True


def _allowed_updates(call: Call) -> list[str] | None:
    value = call.params.json("allowed_updates")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request("can't parse allowed updates JSON object")
    return value


@method("getUpdates")
async def get_updates(call: Call) -> list[dict[str, Any]]:
    bot, params = call.bot, call.params
    if bot.webhook_url:
        raise ApiError(409, WEBHOOK_ACTIVE)
    offset = params.integer("offset", 0) or 0
    limit = min(100, max(1, params.integer("limit", 100) or 100))
    timeout = max(0, params.integer("timeout", 0) or 0)
    bot.updates.set_allowed(_allowed_updates(call))
    return await bot.updates.poll(offset, limit, timeout)


@method("setWebhook")
async def set_webhook(call: Call) -> bool:
    bot, params = call.bot, call.params
    url = params.string("url", "") or ""
    if not url:
        return await _delete_webhook(call)
    parsed = urlparse(url)
    # Telegram insists on HTTPS; the emulator also accepts http so local tests need no TLS.
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    secret = params.string("secret_token", "") or ""
    if secret and not SECRET_TOKEN.match(secret):
        raise bad_request("secret token contains unallowed characters")
    allowed = _allowed_updates(call)
    bot.webhook_url = url
    bot.webhook_secret = secret
    bot.webhook_max_connections = min(100, max(1, params.integer("max_connections", 40) or 40))
    bot.webhook_last_error_date = bot.webhook_last_error_message = None
    bot.updates.set_allowed(allowed)
    if params.boolean("drop_pending_updates"):
        bot.updates.drop_all()
    bot.updates.interrupt()  # a waiting getUpdates ends with "terminated by setWebhook request"
    if call.webhook_changed is not None:
        await call.webhook_changed(bot)
    return True


async def _delete_webhook(call: Call) -> bool:
    bot = call.bot
    if call.params.boolean("drop_pending_updates"):
        bot.updates.drop_all()
    if bot.webhook_url:
        bot.webhook_url = bot.webhook_secret = ""
        if call.webhook_changed is not None:
            await call.webhook_changed(bot)
    return True


@method("deleteWebhook")
async def delete_webhook(call: Call) -> bool:
    return await _delete_webhook(call)


@method("getWebhookInfo")
async def get_webhook_info(call: Call) -> dict[str, Any]:
    bot = call.bot
    info: dict[str, Any] = {
        "url": bot.webhook_url,
        "has_custom_certificate": False,
        "pending_update_count": len(bot.updates.pending),
    }
    if bot.webhook_url:
        info["max_connections"] = bot.webhook_max_connections
        allowed = bot.updates.allowed_list()
        if allowed is not None:
            info["allowed_updates"] = allowed
        if bot.webhook_last_error_date:
            info["last_error_date"] = bot.webhook_last_error_date
            info["last_error_message"] = bot.webhook_last_error_message
    return info


def _commands_key(call: Call) -> str:
    scope = call.params.json("scope") or {"type": "default"}
    if not isinstance(scope, dict) or "type" not in scope:
        raise bad_request("can't parse BotCommandScope JSON object")
    return json.dumps(scope, sort_keys=True) + "|" + (call.params.string("language_code") or "")


@method("setMyCommands")
async def set_my_commands(call: Call) -> bool:
    commands = call.params.json("commands")
    if not isinstance(commands, list):
        raise bad_request("can't parse commands JSON object")
    if len(commands) > 100:
        raise bad_request("too many commands specified")
    cleaned = []
    for command in commands:
        if not isinstance(command, dict):
            raise bad_request("can't parse BotCommand JSON object")
        name = str(command.get("command", "")).lstrip("/")
        description = str(command.get("description", "")).strip()
        if not COMMAND.match(name):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(description) <= 256:
            raise bad_request("command description must be non-empty")
        cleaned.append({"command": name, "description": description})
    key = _commands_key(call)
    if cleaned:
        call.bot.commands[key] = cleaned
    else:
        call.bot.commands.pop(key, None)
    return True


@method("deleteMyCommands")
async def delete_my_commands(call: Call) -> bool:
    call.bot.commands.pop(_commands_key(call), None)
    return True


@method("getMyCommands")
async def get_my_commands(call: Call) -> list[dict[str, Any]]:
    return call.bot.commands.get(_commands_key(call), [])


@method("getFile")
async def get_file(call: Call) -> dict[str, Any]:
    stored = call.world.files.get(call.params.string("file_id") or "")
    if stored is None:
        raise bad_request("invalid file_id")
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": len(stored.content),
        "file_path": stored.file_path,
    }
