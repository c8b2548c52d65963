"""A handler's reply as stored data: a Bot API send call turned into JSON for the outbox
(kind `reply`), and back. Only the calls a handler answers with are stored this way."""

from __future__ import annotations

import base64
from datetime import datetime
from enum import Enum
from typing import Any

from aiogram.client.default import Default
from aiogram.methods import SendDocument, SendMessage, SendPhoto, TelegramMethod
from aiogram.types import BufferedInputFile, InputFile

# Calls that say something to a chat: staged in the outbox and retried until they land.
# A photo (the QR code of a WeChat Pay / Alipay order) is stored with its bytes inline, like
# a document, so a photo that met a 429/5xx is re-sent as the same photo.
SEND_METHODS: dict[str, type[TelegramMethod[Any]]] = {
    cls.__api_method__: cls for cls in (SendMessage, SendDocument, SendPhoto)
}
_FILE = "__file__"


def is_send(method: TelegramMethod[Any]) -> bool:
    return method.__api_method__ in SEND_METHODS


def encode_call(method: TelegramMethod[Any]) -> dict[str, Any]:
    """{"method": "sendMessage", "params": {...}}; JSON only. Fields left to the bot's
    defaults stay unset, so the replay uses the same defaults; a file goes inline (base64)."""
    if not is_send(method):
        raise TypeError(f"{method.__api_method__} is not a reply the outbox can hold")
    params = _plain(method.model_dump(exclude_none=True, warnings=False))
    return {"method": method.__api_method__, "params": params}


def _plain(value: Any) -> Any:
    """The dump made JSON-safe: bot defaults dropped (at any depth), files inlined."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not isinstance(v, Default)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value if not isinstance(v, Default)]
    if isinstance(value, InputFile):
        if not isinstance(value, BufferedInputFile):
            raise TypeError(f"{type(value).__name__} cannot be stored for a later retry")
        return {
            _FILE: {
                "filename": value.filename,
                "data": base64.b64encode(value.data).decode("ascii"),
            }
        }
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def decode_call(call: dict[str, Any]) -> TelegramMethod[Any]:
    cls = SEND_METHODS.get(str(call.get("method")))
    if cls is None:
        raise ValueError(f"not a stored reply: {call.get('method')!r}")
    params = dict(call.get("params") or {})
    for name, value in params.items():
        if isinstance(value, dict) and _FILE in value:
            f = value[_FILE]
            params[name] = BufferedInputFile(base64.b64decode(f["data"]), filename=f["filename"])
    return cls.model_validate(params)


def chat_of(method: TelegramMethod[Any]) -> str:
    return str(getattr(method, "chat_id", ""))
