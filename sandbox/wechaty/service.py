"""The local Wechaty puppet service: WeChat's stand-in for the tests and `gatepass demo`.

`PuppetService` runs puppet_server.mjs (npm `wechaty-puppet-service`'s PuppetServer in front
of `wechaty-puppet-mock`) as a subprocess on free ports, seeded with a bot account, contacts
and rooms, and drives its HTTP control channel: contacts write to the bot, outsiders add and
remove room members, rooms fill up; what the bot sent and who is in a room are read back.
It lives here, beside the server it runs, so the demo and tests/wechat_world.py share one
copy. docs/wechat.md says how it fits together.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

SERVER_DIR = Path(__file__).resolve().parent
SERVER = SERVER_DIR / "puppet_server.mjs"
START_TIMEOUT = 30.0


def node_missing() -> str | None:
    """Why the local puppet service cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return (
            "node is not on PATH: the WeChat tests and demo need Node for the local puppet "
            "service; install Node, then `make test` or `make demo` installs its packages"
        )
    if not (SERVER_DIR / "node_modules" / "wechaty-puppet-service").is_dir():
        return (
            "sandbox/wechaty/node_modules is missing: `make test` or `make demo` installs it "
            "(npm ci --ignore-scripts from the committed lock file)"
        )
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_seed() -> dict[str, Any]:
    """A bot, an owner, two buyers and an intruder; a paid room and a full one."""
    return {
        "bot": {"id": "wxid_bot", "name": "Gatepass"},
        "contacts": [
            {"id": "wxid_owner", "name": "Owner"},
            {"id": "wxid_alice", "name": "Alice"},
            {"id": "wxid_bob", "name": "Bob"},
            {"id": "wxid_mallory", "name": "Mallory"},
        ],
        "rooms": [
            {
                "id": "paid@chatroom",
                "topic": "Paid room",
                "ownerId": "wxid_owner",
                "adminIdList": ["wxid_bot"],
                "memberIdList": ["wxid_bot", "wxid_owner"],
            },
            {
                "id": "full@chatroom",
                "topic": "Full room",
                "ownerId": "wxid_owner",
                "memberIdList": ["wxid_bot", "wxid_owner"],
                "full": True,
            },
        ],
    }


class ControlError(Exception):
    """The control channel refused a request (unknown room or contact, not a member...)."""


@dataclass
class PuppetService:
    """The Node puppet service, on its own ports; `restart` keeps ports, token and seed."""

    seed: dict[str, Any] = field(default_factory=default_seed)
    # An `insecure_` token with an explicit endpoint: no discovery service is ever asked.
    token: str = field(default_factory=lambda: f"insecure_{uuid.uuid4()}")
    port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    started_in: float = 0.0  # seconds the last start took, until READY
    _log: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def bot_id(self) -> str:
        return str(self.seed["bot"]["id"])

    def log_text(self) -> str:
        return self._log.read_text("utf-8", "replace") if self._log else ""

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server and wait (with a deadline) for its READY line."""
        if self.process is not None:
            raise RuntimeError("puppet service already running")
        fd, name = tempfile.mkstemp(prefix="wechaty-puppet-", suffix=".log")
        os.close(fd)
        self._log = Path(name)
        began = time.monotonic()
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    "node",
                    str(SERVER),
                    "--port", str(self.port),
                    "--token", self.token,
                    "--control-port", str(self.control_port),
                    "--seed", "-",
                ],
                cwd=SERVER_DIR,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "WECHATY_PUPPET_SERVICE_NO_TLS_INSECURE_SERVER": "true"},
            )  # fmt: skip
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(self.seed).encode())
        self.process.stdin.close()
        deadline = began + timeout
        while "READY " not in self.log_text():
            if self.process.poll() is not None:
                log_text = self.log_text()
                self.process = None
                raise RuntimeError(f"puppet service exited at start:\n{log_text}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"puppet service not ready in {timeout}s:\n{self.log_text()}")
            time.sleep(0.05)
        self.started_in = time.monotonic() - began

    def stop(self, timeout: float = 10) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout`)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)

    def kill(self) -> None:
        """End the server abruptly, as a crash would (no goodbye on the gRPC stream)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop and start again on the same ports, token and seed: a fresh world."""
        self.stop()
        self.start(timeout)

    # The control channel: what the people around the bot do, and what the bot did.

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.request(method, self.control_url + path, json=body) as response,
        ):
            answer = await response.json()
        if response.status != 200:
            raise ControlError(answer.get("error", f"HTTP {response.status}"))
        return answer

    async def say(self, sender: str, text: str, room: str | None = None) -> str:
        """`sender` writes `text` to the bot in private, or in `room`; returns the message's
        id (the puppet's)."""
        answer = await self._call("POST", "/say", {"from": sender, "text": text, "room": room})
        return str(answer["id"])

    async def message_again(self, message_id: str) -> None:
        """The puppet delivers a message again, same id (as it may after a reconnect)."""
        await self._call("POST", "/message/again", {"id": message_id})

    async def add_contact(self, contact_id: str, name: str | None = None) -> None:
        await self._call("POST", "/contact", {"id": contact_id, "name": name or contact_id})

    async def room_add(self, room: str, contact: str, by: str | None = None) -> None:
        """Someone other than the bot (the owner by default) adds `contact` to `room`."""
        await self._call("POST", "/room/add", {"room": room, "contact": contact, "by": by})

    async def room_remove(self, room: str, contact: str, by: str | None = None) -> None:
        await self._call("POST", "/room/remove", {"room": room, "contact": contact, "by": by})

    async def room_code(self, room: str) -> str:
        """The room's join code: what its QR code (the bot's invitation image) says."""
        answer = await self._call("GET", f"/room/code?room={room}")
        return str(answer["code"])

    async def scan(self, room: str, contact: str, code: str | None = None) -> None:
        """`contact` scans the room's join code (the QR image the bot sent them) and is in:
        a room-join with the bot as inviter. A `code` that is not the room's is refused."""
        await self._call("POST", "/room/scan", {"room": room, "contact": contact, "code": code})

    async def set_full(self, room: str, full: bool = True) -> None:
        """A full room (over 40 members / invite confirmation on) refuses `room.add`."""
        await self._call("POST", "/room/full", {"room": room, "full": full})

    async def members(self, room: str) -> list[str]:
        answer = await self._call("GET", f"/room/members?room={room}")
        return list(answer["members"])

    async def sent(self, since: int = 0) -> list[dict[str, Any]]:
        """What the bot sent, in order: {"kind": "text", "to", "text", "at"} or
        {"kind": "file", "to", "name", "mediaType", "base64", "at"} (`at`: when, in ms)."""
        answer = await self._call("GET", f"/sent?since={since}")
        return list(answer["sent"])

    async def state(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/state"))

    async def wait_sent(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        """The first thing the bot sent that passes `check`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for item in await self.sent():
                if check(item):
                    return item
            if time.monotonic() > deadline:
                raise AssertionError(f"the bot sent nothing matching; sent: {await self.sent()}")
            await asyncio.sleep(0.05)
