"""Notification delivery of the local WeChat Pay host, as WeChat Pay does it: a JSON envelope
whose `resource` is encrypted with the APIv3 key, POSTed to the order's notify_url, signed
with the platform key; any answer but 2xx is retried on WeChat's schedule (15 s, 15 s, 30 s,
3 min, 10 min, 20 min, 30 min, 30 min, 30 min, 60 min, 3 h, 3 h, 3 h, 6 h, 6 h), compressed
here by `scale` so that tests see the retries in well under a second.

Test controls: lose the next N notifications (never delivered, as if every retry failed),
resend one (freshly signed, or signed as if `age` seconds ago), replay one (its first
delivery's exact headers and body), and the record of every notification and attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.wechatpay.crypto import SCHEMA, answer_message, random_text, seal, sign
from sandbox.wechatpay.merchant import rfc3339

log = logging.getLogger(__name__)

SCHEDULE_SECONDS: tuple[int, ...] = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600)
SCHEDULE_SECONDS += (10800, 10800, 10800, 21600, 21600)
SUMMARIES = {
    "TRANSACTION.SUCCESS": "支付成功",
    "REFUND.SUCCESS": "退款成功",
    "REFUND.ABNORMAL": "退款异常",
    "REFUND.CLOSED": "退款关闭",
}


@dataclass
class Attempt:
    status: int | None  # None: no answer (network error)
    body: str


@dataclass
class Notification:
    id: str
    event_type: str
    url: str
    resource: dict[str, Any]  # the plain resource, for tests to read
    body: bytes  # the envelope as sent (resource encrypted)
    lost: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    first_headers: dict[str, str] = field(default_factory=dict)

    @property
    def delivered(self) -> bool:
        return any(a.status is not None and 200 <= a.status < 300 for a in self.attempts)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_type": self.event_type,
            "out_trade_no": self.resource.get("out_trade_no"),
            "lost": self.lost,
            "delivered": self.delivered,
            "attempts": [{"status": a.status, "body": a.body} for a in self.attempts],
        }


class Notifier:
    def __init__(
        self,
        platform_key: rsa.RSAPrivateKey,
        platform_key_id: str,
        apiv3_key: str,
        now: Callable[[], datetime],
        scale: float = 0.01,
    ) -> None:
        self._key, self._key_id, self._apiv3_key = platform_key, platform_key_id, apiv3_key
        self._now, self._scale = now, scale
        self.sent: list[Notification] = []
        self._lose = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: ClientSession | None = None

    def lose_next(self, n: int) -> None:
        self._lose += n

    def signed_headers(self, body: bytes, age: float = 0) -> dict[str, str]:
        timestamp, nonce = str(int(time.time() - age)), random_text(32)
        return {
            "Content-Type": "application/json",
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": sign(self._key, answer_message(timestamp, nonce, body.decode())),
            "Wechatpay-Serial": self._key_id,
            "Wechatpay-Signature-Type": SCHEMA,
        }

    def notify(
        self, url: str, event_type: str, original_type: str, resource: dict[str, Any]
    ) -> Notification:
        """Queue one notification (delivered in the background, retried until 2xx)."""
        sealed = seal(self._apiv3_key, json.dumps(resource, ensure_ascii=False), original_type)
        note_id = str(uuid.uuid4())
        envelope = {
            "id": note_id,
            "create_time": rfc3339(self._now()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": SUMMARIES.get(event_type, event_type),
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": sealed.ciphertext,
                "associated_data": sealed.associated_data,
                "nonce": sealed.nonce,
            },
        }
        body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
        note = Notification(note_id, event_type, url, resource, body)
        self.sent.append(note)
        if self._lose > 0:
            self._lose -= 1
            note.lost = True
            return note
        self._spawn(self._deliver(note))
        return note

    def find(self, notification_id: str) -> Notification:
        for note in self.sent:
            if note.id == notification_id:
                return note
        raise KeyError(notification_id)

    async def resend(self, notification_id: str, age: float = 0) -> Attempt:
        """Send a notification once more, signed now (or `age` seconds ago)."""
        note = self.find(notification_id)
        return await self._post(note, self.signed_headers(note.body, age))

    async def replay(self, notification_id: str) -> Attempt:
        """Send the first delivery's exact headers and body again (a replay)."""
        note = self.find(notification_id)
        headers = note.first_headers or self.signed_headers(note.body)
        return await self._post(note, headers)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, note: Notification, headers: dict[str, str]) -> Attempt:
        if self._http is None:
            self._http = ClientSession(timeout=ClientTimeout(total=10))
        try:
            async with self._http.post(note.url, data=note.body, headers=headers) as r:
                attempt = Attempt(r.status, await r.text())
        except (ClientError, OSError, TimeoutError) as e:
            attempt = Attempt(None, type(e).__name__)
        note.attempts.append(attempt)
        return attempt

    async def _deliver(self, note: Notification) -> None:
        for wait in (0, *SCHEDULE_SECONDS):
            await asyncio.sleep(wait * self._scale)
            headers = self.signed_headers(note.body)  # each try is signed when sent
            if not note.first_headers:
                note.first_headers = headers
            attempt = await self._post(note, headers)
            if attempt.status is not None and 200 <= attempt.status < 300:
                return
            log.info("wechatpay sandbox: %s answered %s; retrying", note.url, attempt.status)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None
