"""Reading a verified webhook body as JSON without letting its shape raise anything but
MalformedEvent: not UTF-8, not JSON, nested too deep for the parser, not an object."""

from __future__ import annotations

import json
from typing import Any

from billing.errors import InvalidEvent, MalformedEvent
from billing.events import MAX_EVENT_TYPE_LENGTH, MAX_ID_LENGTH, check_text


def load_json_object(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedEvent("body is not UTF-8") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise MalformedEvent("body is JSON nested too deep") from None
    except ValueError as e:
        raise MalformedEvent(f"body is not JSON ({e.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise MalformedEvent(f"body is a JSON {type(data).__name__}, not an object")
    return data


def storable_id(value: Any) -> str | None:
    """`value` if it can key a webhook_event row, else None."""
    return value if _fits(value, MAX_ID_LENGTH) else None


def storable_type(value: Any) -> str | None:
    return value if _fits(value, MAX_EVENT_TYPE_LENGTH) else None


def _fits(value: Any, length: int) -> bool:
    try:
        check_text("value", value, length)
    except InvalidEvent:
        return False
    return True
