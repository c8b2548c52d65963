"""What sendPhoto needs to know about an uploaded image: that it is one, and its size.

Telegram decodes every photo and stores it in several sizes (thumbnails of at most 90,
320, 800 and 1280 px a side, and the photo itself up to 2560 px). The emulator reads the
dimensions from the image header (PNG, JPEG, GIF, WebP) and lists those sizes, but does not
resample: every size's file holds the uploaded bytes. Anything that is not such an image is
refused as Telegram refuses it (IMAGE_PROCESS_FAILED).
"""

from __future__ import annotations

import struct

MAX_PHOTO_BYTES = 10 * 1024 * 1024  # Bot API: photos of at most 10 MB
SIZE_STEPS = (90, 320, 800, 1280)
MAX_SIDE = 2560
MAX_SIDES_SUM = 10000  # Bot API: width + height at most 10000
MAX_RATIO = 20  # Bot API: width/height ratio at most 20


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, GIF or WebP; None otherwise."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length follows
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        i += 2 + length
    return None


def dimensions_problem(width: int, height: int) -> str | None:
    """Telegram's refusal of an image it will not take as a photo, or None."""
    if width < 1 or height < 1 or width + height > MAX_SIDES_SUM:
        return "PHOTO_INVALID_DIMENSIONS"
    if max(width, height) > MAX_RATIO * min(width, height):
        return "PHOTO_INVALID_DIMENSIONS"
    return None


def size_ladder(width: int, height: int) -> list[tuple[int, int]]:
    """The (width, height) of each stored size, smallest first, as Telegram lists them."""
    side = max(width, height)
    sizes = []
    for step in (*SIZE_STEPS, MAX_SIDE):
        if step >= side:
            break
        sizes.append((max(1, width * step // side), max(1, height * step // side)))
    top = min(side, MAX_SIDE)
    sizes.append((max(1, width * top // side), max(1, height * top // side)))
    return sizes
