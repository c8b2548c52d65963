"""The QR code a buyer scans with WeChat or Alipay, as a PNG (the bot's photo, the pay page).

segno is pure Python (no Pillow, no system libraries) and writes PNG itself. The payload
is the provider's (`weixin://wxpay/...`, `https://qr.alipay.com/...`), short enough for a
small QR version; error correction M survives a phone photographing a screen.
"""

from __future__ import annotations

import io

import segno

# The standard quiet zone: scanners need 4 light modules around the symbol.
QUIET_ZONE = 4
# Aim for about this many pixels a side: sharp on a phone, small to send (a few KB).
TARGET_PX = 420
MAX_PAYLOAD = 1024  # provider payloads are ~30-100 characters; more is a bug, not a QR


def qr_png(payload: str) -> bytes:
    """A scannable PNG of `payload` with its quiet zone, about TARGET_PX pixels a side
    (whole pixels per module, so every module stays crisp). ValueError for an empty or
    oversized payload."""
    if not payload or len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a QR payload must have 1..{MAX_PAYLOAD} characters")
    code = segno.make(payload, error="m", micro=False, boost_error=False)
    modules = code.symbol_size(scale=1, border=QUIET_ZONE)[0]
    scale = max(2, TARGET_PX // modules)
    buf = io.BytesIO()
    code.save(buf, kind="png", scale=scale, border=QUIET_ZONE)
    return buf.getvalue()
