"""Reading `t=<unix time>,v1=<hex mac>[,...]` signature headers (Stripe's scheme, which the
sandbox provider copies) strictly, before any MAC is computed.

Whatever arrives in the header is attacker-controlled: non-ASCII text, a timestamp of ten
thousand digits (int() refuses more than 4300), full-width digits that int() accepts, a
header sent twice. Each gives a WebhookRejected with a one-line reason (answered 400, nothing
stored), never an exception from deep inside a library (a 500, which asks to be retried).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from billing.errors import WebhookRejected

MAX_HEADER_LENGTH = 1024  # a timestamp and a few 64-hex signatures fit many times over
_ITEM = re.compile(r"([a-z][a-z0-9]{0,7})=([A-Za-z0-9_]{1,128})")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_MAC = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SignatureHeader:
    timestamp: int
    signatures: tuple[str, ...]  # the v1 (HMAC-SHA256, hex) signatures given


def single_header(headers: Mapping[str, str], name: str) -> str:
    """The one value of header `name` (case-insensitive); several or none is a rejection."""
    values = [v for k, v in headers.items() if k.lower() == name.lower()]
    if not values:
        raise WebhookRejected(f"missing {name} header")
    if len(values) > 1:
        raise WebhookRejected(f"{name} header given {len(values)} times")
    return values[0]


def parse_signature_header(value: str, name: str) -> SignatureHeader:
    if not value.strip():
        raise WebhookRejected(f"{name} header is empty")
    if len(value) > MAX_HEADER_LENGTH:
        raise WebhookRejected(f"{name} header is longer than {MAX_HEADER_LENGTH} characters")
    if not value.isascii() or not value.isprintable():
        raise WebhookRejected(f"{name} header is not printable ASCII")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in value.split(","):
        m = _ITEM.fullmatch(item.strip())
        if m is None:
            raise WebhookRejected(f"{name} header is not a list of key=value items")
        key, val = m.groups()
        if key == "t":
            timestamps.append(val)
        elif key == "v1":
            signatures.append(val)
    if len(timestamps) != 1:
        raise WebhookRejected(f"{name} header needs exactly one t= timestamp")
    if not _TIMESTAMP.fullmatch(timestamps[0]):
        raise WebhookRejected(f"{name} header timestamp is not a unix time")
    if not signatures:
        raise WebhookRejected(f"{name} header has no v1= signature")
    if not all(_MAC.fullmatch(s) for s in signatures):
        raise WebhookRejected(f"{name} header v1= signature is not 64 hex digits")
    return SignatureHeader(int(timestamps[0]), tuple(signatures))
