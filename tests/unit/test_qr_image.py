"""billing/qr_image.py: the PNG is exactly segno's QR matrix, with its quiet zone, phone-sized.

No QR decoder is installed (they need system libraries), so the PNG is decoded here with
zlib and compared module by module with the symbol segno computed for the payload."""

from __future__ import annotations

import struct
import zlib

import pytest
import segno

from billing.qr_image import QUIET_ZONE, qr_png

PAYLOADS = [
    "weixin://wxpay/bizpayurl?pr=AbCdEfGhIj",
    "https://qr.alipay.com/bax08431ynpqq4tkt8lp0064",
    "x" * 500,
]


def decode_png(data: bytes) -> list[list[int]]:
    """Rows of 0/1 pixels of a 1-bit greyscale PNG (what segno writes), 1 = light."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    i, idat, header = 8, b"", b""
    while i < len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        kind, chunk = data[i + 4 : i + 8], data[i + 8 : i + 8 + n]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        i += 12 + n
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert (depth, colour) == (1, 0), "segno writes 1-bit greyscale"
    raw = zlib.decompress(idat)
    stride = (width + 7) // 8
    rows, prev = [], bytes(stride)
    for y in range(height):
        f, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):  # PNG filters (bytes are the unit at depth 1)
            a = line[x - 1] if x else 0
            b, c = prev[x], prev[x - 1] if x else 0
            if f == 1:
                line[x] = (line[x] + a) & 0xFF
            elif f == 2:
                line[x] = (line[x] + b) & 0xFF
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        prev = bytes(line)
        rows.append([(line[x // 8] >> (7 - x % 8)) & 1 for x in range(width)])
    return rows


@pytest.mark.parametrize("payload", PAYLOADS)
def test_png_is_the_payloads_qr_code_with_a_quiet_zone_and_phone_sized(payload: str) -> None:
    png = qr_png(payload)
    pixels = decode_png(png)
    side = len(pixels)
    assert side == len(pixels[0]) and 300 <= side <= 500
    symbol = segno.make(payload, error="m", micro=False, boost_error=False)
    modules = symbol.symbol_size(scale=1, border=QUIET_ZONE)[0]
    assert side % modules == 0
    scale = side // modules
    matrix = symbol.matrix
    for my in range(modules):
        for mx in range(modules):
            inside = (
                QUIET_ZONE <= mx < modules - QUIET_ZONE and QUIET_ZONE <= my < modules - QUIET_ZONE
            )
            dark = inside and bool(matrix[my - QUIET_ZONE][mx - QUIET_ZONE])
            block = {
                pixels[my * scale + dy][mx * scale + dx]
                for dy in range(scale)
                for dx in range(scale)
            }
            assert block == {0 if dark else 1}, (mx, my)


def test_the_symbol_carries_the_payload_not_something_else() -> None:
    a, b = qr_png(PAYLOADS[0]), qr_png(PAYLOADS[0].replace("AbC", "XyZ"))
    assert a != b and qr_png(PAYLOADS[0]) == a  # deterministic, payload-dependent


@pytest.mark.parametrize("payload", ["", "y" * 1025])
def test_refuses_an_empty_or_oversized_payload(payload: str) -> None:
    with pytest.raises(ValueError, match="QR payload"):
        qr_png(payload)
