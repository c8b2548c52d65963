"""The QR-code providers the buyer-side e2e tests (test_qr_checkout.py, test_pay_page.py)
run against, one rig each: how to put the provider into a world, and how a buyer pays at it.

The real providers (billing/providers/wechatpay_provider.py, alipay_provider.py), configured
from the sections their local API hosts hand out (sandbox/wechatpay_host.py FakeWechatPay,
sandbox/alipay_host.py FakeAlipay): `hosts()` gives start_world the host, `pay` scans and
pays at the host with the notification lost on the way, and `notify` has the host deliver
that notification again, signed. The QR provider double (tests/qr_provider.py) stays for the
unit tests of billing/check_now.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

from sandbox.alipay_host import FakeAlipay
from sandbox.telegram.client import SentMessage
from sandbox.wechatpay_host import FakeWechatPay
from tests.e2e.world import BUYER, OutsideHost, World
from tests.qr_provider import QrProviderDouble


class QrRig(Protocol):
    name: str  # the provider's name: PayCb's `provider`, the webhook route
    app_en: str  # the scanning app in the caption: "WeChat" / "Alipay"
    app_zh: str  # ... in Chinese: "微信" / "支付宝"

    def hosts(self) -> list[OutsideHost]: ...

    @property
    def phone_url(self) -> str:
        """The host's sandbox phone page ("" for the double, which has none)."""
        ...

    def attach(self, world: World) -> None:
        """Called once the world runs (a double joins the service's providers here)."""
        ...

    async def pay(self, world: World, order_no: str) -> None:
        """The buyer scans the code and pays; the provider sends NO notification. Raises
        if the provider refuses (a closed order)."""
        ...

    async def notify(self, world: World, order_no: str) -> None:
        """The provider's notification of that payment reaches our webhook (answered 2xx)."""
        ...


class DoubleRig:
    """The QR provider double put straight into the running service: for what no real
    provider can be made to do (an oversized QR payload)."""

    def __init__(self, name: str, scan_app: str, prefix: str, app_en: str, app_zh: str) -> None:
        self.name, self.app_en, self.app_zh = name, app_en, app_zh
        self.double = QrProviderDouble(name, scan_app, payload_prefix=prefix)

    def hosts(self) -> list[OutsideHost]:
        return []

    @property
    def phone_url(self) -> str:
        return ""

    def attach(self, world: World) -> None:
        # The bot, the outbox, reconciliation and the webhook route all read this one dict.
        world.service.providers[self.name] = self.double
        self.double.webhook_url = f"{world.public_url}/webhooks/{self.name}"

    async def pay(self, world: World, order_no: str) -> None:
        self.double.pay(order_no)

    async def notify(self, world: World, order_no: str) -> None:
        status = await self.double.notify(order_no)
        assert status == 200, status


class _HostRig:
    """A real QR provider against its local host: what both hosts do alike."""

    host: FakeWechatPay | FakeAlipay

    def hosts(self) -> list[OutsideHost]:
        return [self.host]

    @property
    def phone_url(self) -> str:
        return self.host.phone_url

    def attach(self, world: World) -> None:
        self.host.clock = world.clock  # orders expire on the service's (movable) time

    async def pay(self, world: World, order_no: str) -> None:
        self.host.lose_next(1)  # the payment's notification never reaches us
        self.host.pay(order_no)


class WechatPayRig(_HostRig):
    name, app_en, app_zh = "wechatpay", "WeChat", "微信"

    def __init__(self) -> None:
        self.host = self.wechat = FakeWechatPay()

    async def notify(self, world: World, order_no: str) -> None:
        note = next(
            n
            for n in reversed(self.wechat.notifications)
            if n.event_type == "TRANSACTION.SUCCESS" and n.resource["out_trade_no"] == order_no
        )
        attempt = await self.wechat.notifier.resend(note.id)
        assert attempt.status is not None and 200 <= attempt.status < 300, attempt


class AlipayRig(_HostRig):
    name, app_en, app_zh = "alipay", "Alipay", "支付宝"

    def __init__(self) -> None:
        self.host = self.alipay = FakeAlipay()

    async def notify(self, world: World, order_no: str) -> None:
        note = next(
            n
            for n in reversed(self.alipay.notifications)
            if n.fields.get("out_trade_no") == order_no
            and n.fields.get("trade_status") == "TRADE_SUCCESS"
        )
        self.alipay.resend(note.notify_id)
        await self.alipay.settle()
        assert note.acknowledged, note.answers


RIGS: dict[str, Callable[[], QrRig]] = {"wechatpay": WechatPayRig, "alipay": AlipayRig}


@asynccontextmanager
async def qr_world(db_url: tuple[str, str | None], rig: QrRig) -> AsyncIterator[World]:
    """A running world with the rig's provider offered, and a shop selling a CNY plan."""
    from tests.e2e.conftest import start_world, stop_world

    world, emulator = await start_world(db_url, hosts=rig.hosts())
    try:
        rig.attach(world)
        await world.set_up_shop("30d 9.90CNY Monthly access")
        yield world
    finally:
        await stop_world(world, emulator)


async def qr_checkout(world: World, rig: QrRig, buyer: int = BUYER) -> SentMessage:
    """The buyer browses, picks the CNY plan and the rig's provider; the QR photo."""
    groups = await world.ask(buyer, "/start", match=lambda m: bool(m.callback_data))
    plans = await world.press(buyer, groups, "grp:", match=lambda m: bool(m.callback_data))
    methods = await world.press(buyer, plans, "pln:", match=lambda m: bool(m.callback_data))
    return await world.press(
        buyer,
        methods,
        "pay:",
        match=lambda m: m.kind == "photo",
        suffix=f":{rig.name}:CNY",
        timeout=15,
    )
