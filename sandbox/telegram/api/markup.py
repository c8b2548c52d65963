"""reply_markup validation: keyboard mistakes Telegram refuses (long callback_data, bad URLs)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from ..errors import bad_request
from ..params import Params

# Fields of InlineKeyboardButton that give a button its action; exactly one is required.
_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def parse_reply_markup(params: Params) -> dict[str, Any] | None:
    markup = params.json("reply_markup", "can't parse reply keyboard markup JSON object")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        return {"inline_keyboard": _inline_keyboard(markup["inline_keyboard"])}
    if "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request('Field "keyboard" of the ReplyKeyboardMarkup must be an Array')
        return markup
    if markup.get("remove_keyboard") or markup.get("force_reply"):
        return markup
    raise bad_request('can\'t find field "inline_keyboard"')


def _inline_keyboard(rows: Any) -> list[list[dict[str, Any]]]:
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise bad_request(
            'Field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
        )
    out = []
    for row in rows:
        out_row = []
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise bad_request(
                    'can\'t parse inline keyboard button: Field "text" must be of type String'
                )
            if not any(key in button for key in _ACTIONS):
                raise bad_request(
                    "can't parse inline keyboard button: Text buttons are "
                    "unallowed in the inline keyboard"
                )
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise bad_request("BUTTON_DATA_INVALID")
            url = button.get("url")
            if url is not None:
                parsed = urlparse(str(url))
                if parsed.scheme not in ("http", "https", "tg") or not (
                    parsed.netloc or parsed.scheme == "tg"
                ):
                    raise bad_request(
                        f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL"
                    )
            out_row.append(button)
        out.append(out_row)
    return out


def message_markup(markup: dict[str, Any] | None) -> dict[str, Any] | None:
    """Only inline keyboards belong to a Message object; reply keyboards live on the client."""
    if markup and markup.get("inline_keyboard"):
        return markup
    return None
