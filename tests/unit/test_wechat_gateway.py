"""WechatGateway without a connection: how catalog messages read on WeChat (no buttons:
lines instead; Chinese unless the user chose English), how the puppet's failures map to the
outbox's retry rules, and what a WeChat room cannot do. What it does over a live connection
(send, room.add, the join-code fallback, room.delete, the rate budget) is tested end to end in
tests/e2e/test_wechat_worker.py."""

from __future__ import annotations

from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from bot.gateway import RateLimiter
from bot.wechat.compat import WechatyPuppetError
from bot.wechat.gateway import WechatGateway, call, is_room, join_code_name, render
from membership.gateway import Button, RejectedError, RetryAfter, TransientError
from membership.lapse import BUY_LINK

GROUP = {"group": "Paid room"}


def gateway() -> WechatGateway:
    return WechatGateway(RateLimiter(10, 60, 60))


def test_a_message_renders_in_chinese_by_default_with_buttons_as_lines():
    text = render(
        "renew_reminder",
        {**GROUP, "until": "2026-12-24T00:00:00+00:00", "buy_link": "给我发“菜单”"},
        "zh",
        [
            Button("btn_renew", url=BUY_LINK, params=GROUP),
            Button("btn_join", url="https://example.org/r", params=GROUP),
            Button("btn_join", callback_data="cancel:1", params=GROUP),  # nothing to press
        ],
    )
    lines = text.split("\n")
    assert "Paid room" in lines[0] and "2026-12-24" in lines[0] and "给我发“菜单”" in lines[0]
    assert lines[1] == "续费Paid room：回复“续费”。"
    assert lines[2].endswith(": https://example.org/r") and "Paid room" in lines[2]
    assert len(lines) == 3


def test_english_when_chosen():
    assert render("wechat_renew_line", GROUP, "en", None) == 'To renew Paid room, reply "renew".'


class Recording:
    """The part of a puppet the gateway calls to send a text."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    async def message_send_text(self, to: str, text: str) -> str:
        self.texts.append((to, text))
        return "id"


class Connected:
    def __init__(self, puppet: Any) -> None:
        self._puppet = self.puppet = puppet


async def test_send_fills_the_buy_link_with_what_to_reply():
    g, puppet = gateway(), Recording()
    g.bot = Connected(puppet)
    await g.send("wxid_bob", "access_ended", {**GROUP, "group_id": 3}, None)
    await g.send("wxid_ann", "access_ended", {**GROUP, "group_id": 3}, "en")
    (to_bob, zh), (to_ann, en) = puppet.texts
    assert (to_bob, to_ann) == ("wxid_bob", "wxid_ann")
    assert zh.endswith("给我发“菜单”") and "{" not in zh
    assert en.endswith('send me "menu"')


async def test_disconnected_calls_are_transient():
    g = gateway()
    with pytest.raises(TransientError, match="not connected"):
        await g.send_prepared("wxid_bob", {"text": "hi"})
    with pytest.raises(TransientError, match="not connected"):
        await g.remove_member("r@chatroom", "wxid_bob")
    with pytest.raises(TransientError, match="not connected"):
        await g.add_member("r@chatroom", "wxid_bob")


@pytest.mark.parametrize(
    "call_data", [{}, {"text": ""}, {"image_base64": "not base64!"}, {"photo": "x"}]
)
async def test_a_stored_reply_no_retry_can_send_is_refused(call_data: dict[str, Any]):
    g = gateway()
    g.bot = Connected(Recording())
    with pytest.raises(RejectedError, match="not a stored reply"):
        await g.send_prepared("wxid_bob", call_data)


async def _raise(e: BaseException) -> None:
    raise e


@pytest.mark.parametrize(
    "error,expected",
    [
        (GRPCError(Status.UNAVAILABLE, "down"), TransientError),
        (GRPCError(Status.UNKNOWN, "roomAdd refused"), TransientError),
        (GRPCError(Status.NOT_FOUND, "no such contact"), RejectedError),
        (GRPCError(Status.PERMISSION_DENIED, "not the owner"), RejectedError),
        (GRPCError(Status.RESOURCE_EXHAUSTED, "slow down"), RetryAfter),
        (StreamTerminatedError("Connection lost"), TransientError),
        (ConnectionResetError("reset"), TransientError),
        (WechatyPuppetError("puppet gone"), TransientError),
    ],
)
async def test_puppet_errors_map_to_the_outbox_rules(error: BaseException, expected: type):
    with pytest.raises(expected):
        await call(_raise(error))


@pytest.mark.parametrize(
    "method,args",
    [
        ("create_invite", ("r@chatroom",)),
        ("revoke_invite", ("r@chatroom", "link")),
        ("approve_join", ("r@chatroom", "wxid_bob")),
        ("decline_join", ("r@chatroom", "wxid_bob")),
    ],
)
async def test_what_wechat_rooms_do_not_have_is_refused(method: str, args: tuple[str, ...]):
    kwargs = (
        {"name": "n", "join_request": False, "expire_at": None} if method == "create_invite" else {}
    )
    with pytest.raises(RejectedError):
        await getattr(gateway(), method)(*args, **kwargs)


def test_a_busy_chat_is_put_back_before_any_work():
    g = WechatGateway(RateLimiter(100, 6, 6, max_chat_wait=5))  # one call per 10 s a chat
    g.limiter.pause("wxid_bob", 30)
    with pytest.raises(RetryAfter):
        g.check_budget("wxid_bob")
    g.check_budget("wxid_ann")  # others go on


def test_room_ids():
    assert is_room("123@chatroom") and not is_room("wxid_bob")
    assert join_code_name("123@chatroom") == "join-123.png"
