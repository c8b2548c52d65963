"""Bot API request parameters: query string, JSON, urlencoded or multipart, read the Telegram way.

Telegram types every parameter itself: a form field "123" is an Integer, "true" a Boolean, and
an object such as reply_markup arrives as a JSON-serialised string. aiogram relies on this (it
sends multipart or urlencoded forms with JSON-encoded values), so every getter accepts both the
JSON-typed value and its string form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.multipart import MultipartResponseWrapper

from .errors import ApiError, bad_request


@dataclass(frozen=True)
class Upload:
    filename: str
    content: bytes
    content_type: str | None


class Params:
    def __init__(self, values: dict[str, Any], uploads: dict[str, Upload] | None = None) -> None:
        self.values = values
        self.uploads = uploads or {}

    @classmethod
    async def from_request(cls, request: web.Request) -> Params:
        values: dict[str, Any] = dict(request.query)
        uploads: dict[str, Upload] = {}
        if request.method == "POST" and request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                try:
                    body = json.loads(await request.read() or b"{}")
                except ValueError as exc:
                    raise bad_request("can't parse JSON object") from exc
                if not isinstance(body, dict):
                    raise bad_request("can't parse JSON object")
                values.update(body)
            elif ctype.startswith("multipart/"):
                await read_multipart(await request.multipart(), values, uploads)
            else:
                values.update(await request.post())
        return cls(values, uploads)

    # --- typed getters (Telegram's coercions) -------------------------------------------------

    def has(self, name: str) -> bool:
        return self.values.get(name) not in (None, "")

    def string(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        if value is None:
            return default
        if isinstance(value, (dict, list)):
            return json.dumps(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def integer(
        self, name: str, default: int | None = None, *, error: str | None = None
    ) -> int | None:
        value = self.values.get(name)
        if value in (None, ""):
            return default
        if isinstance(value, bool):
            return int(value)
        try:
            return int(value) if isinstance(value, int) else int(str(value).strip())
        except ValueError:
            raise bad_request(error or f"invalid {name} specified") from None

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name)
        if value in (None, ""):
            return default
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("true", "1", "yes", "on")

    def json(self, name: str, error: str | None = None) -> Any:
        value = self.values.get(name)
        if value in (None, ""):
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(error or f"can't parse {name} JSON object") from None
        return value

    def file(self, name: str) -> Upload | str | None:
        """An uploaded file (directly, or by `attach://<field>`), or a file_id/URL string."""
        if name in self.uploads:
            return self.uploads[name]
        value = self.string(name)
        if value and value.startswith("attach://"):
            upload = self.uploads.get(value[len("attach://") :])
            if upload is None:
                raise bad_request(f"file {value} not found in the request")
            return upload
        return value or None

    def loggable(self) -> dict[str, Any]:
        """Parameters for the call log, with uploads summarised instead of their bytes."""
        out = dict(self.values)
        for key, upload in self.uploads.items():
            out[key] = {"filename": upload.filename, "size": len(upload.content)}
        return out


async def read_multipart(
    reader: MultipartReader | MultipartResponseWrapper,
    values: dict[str, Any],
    uploads: dict[str, Upload],
) -> None:
    """Fields become values, parts with a filename uploads (webhook replies use it too)."""
    while True:
        part = await reader.next()
        if part is None:
            return
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "Bad Request: nested multipart is not supported")
        name = part.name or ""
        data = await part.read(decode=True)
        if part.filename is not None:
            uploads[name] = Upload(part.filename, bytes(data), part.headers.get("Content-Type"))
        else:
            values[name] = bytes(data).decode("utf-8", errors="replace")
