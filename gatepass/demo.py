"""`gatepass demo`: the whole story on embedded defaults, printed as a chat transcript.

The real service runs against the Telegram Bot API emulator and the sandbox payment provider
on a temporary SQLite database: no account, token or network. Exits 0 only if every step of
the story happened as it should.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from gatepass.config import Settings
from gatepass.demo_wechat import WechatFailed
from gatepass.demo_wechat import wechat_chapter as wechat_room_chapter
from gatepass.service import Service
from sandbox.alipay_host import FakeAlipay
from sandbox.checkout_page import add_routes as sandbox_checkout_routes
from sandbox.telegram.client import EmulatorClient, SentMessage
from sandbox.telegram.server import TelegramEmulator
from sandbox.wechatpay_host import FakeWechatPay
from storage.clock import MovableClock

TOKEN = "7000:demo-token"
BOT_ID = 7000
BOT_USERNAME = "gatepass_demo_bot"
OWNER, BUYER, STRANGER = 101, 202, 303
# The Telegram Stars and WeChat Pay chapters' buyers: only the demo's (the playground's cast
# stays as it is).
STARS_BUYER = 404
WECHAT_BUYER = 505
WALLET_BUYER = 606
GROUP = -100777
GROUP_TITLE = "Traders Club"
NAMES = {
    OWNER: "Olga (owner)",
    BUYER: "Bob (buyer)",
    STRANGER: "Sam (stranger)",
    STARS_BUYER: "Dana (buyer)",
    WECHAT_BUYER: "Wei (buyer)",
    WALLET_BUYER: "Tia (buyer)",
}


class DemoFailed(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Story:
    """Acts the people out through the emulator's control API and prints what the bot says."""

    def __init__(self, tg: EmulatorClient, quiet: bool) -> None:
        self.tg, self.quiet = tg, quiet
        self.seen: dict[int, int] = {}

    def say(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)

    async def _last(self, chat: int) -> int:
        msgs = await self.tg.sent_messages(chat, everyone=True)
        return msgs[-1].message_id if msgs else 0

    async def bot_reply(
        self, chat: int, since: int, match: Callable[[SentMessage], bool], where: str
    ) -> SentMessage:
        try:
            msg = await self.tg.wait_for_message(chat, match, since=since, timeout=10)
        except TimeoutError:
            raise DemoFailed(f"the bot did not answer in {where}") from None
        for m in await self.tg.sent_messages(chat, since=since):
            if m.message_id > self.seen.get(chat, 0) and m.message_id <= msg.message_id:
                self._print_bot(m, where)
        self.seen[chat] = max(self.seen.get(chat, 0), msg.message_id)
        return msg

    def _print_bot(self, m: SentMessage, where: str) -> None:
        if m.invoice is not None:
            inv = m.invoice
            self.say(
                f"  bot → {where}: [invoice] {inv['title']}: {inv['description']}, "
                f"{_price(inv['currency'], inv['total_amount'])}"
            )
            self.say(f"      [Pay {_price(inv['currency'], inv['total_amount'])}]")
            return
        text = (m.text or "").replace("\n", "\n      ")
        if m.kind == "photo":  # the QR code (its caption is the text)
            text = f"[photo: QR code, {len(m.photo_bytes or b'')} bytes PNG] {text}"
        self.say(f"  bot → {where}: {text}")
        for b in m.buttons:
            target = b.get("url") or b.get("callback_data")
            self.say(f"      [{b['text']}] ({target})")

    async def write(
        self,
        user: int,
        text: str,
        match: Callable[[SentMessage], bool],
        chat: int | None = None,
        where: str = "",
    ) -> SentMessage:
        place = chat if chat is not None else user
        since = await self._last(place)
        self.say(f"{NAMES[user]} in {where or 'private chat'}: {text}")
        await self.tg.send_text(user, text, chat_id=chat)
        return await self.bot_reply(place, since, match, where or f"{NAMES[user].split()[0]}")

    async def press(
        self,
        user: int,
        msg: SentMessage,
        prefix: str,
        match: Callable[[SentMessage], bool],
        label: str = "",
    ) -> SentMessage:
        """Press the first button whose callback data starts with `prefix` (and whose text
        has `label`)."""
        button = next(
            b
            for b in msg.buttons
            if b.get("callback_data", "").startswith(prefix) and label in b["text"]
        )
        since = await self._last(msg.chat_id)
        self.say(f"{NAMES[user]} presses [{button['text']}]")
        await self.tg.press_button(
            user, msg.message_id, button["callback_data"], chat_id=msg.chat_id
        )
        return await self.bot_reply(msg.chat_id, since, match, NAMES[user].split()[0])


def _has_buttons(m: SentMessage) -> bool:
    return bool(m.buttons)


def _price(currency: str, amount: int) -> str:
    return f"{amount} ⭐" if currency == "XTR" else f"{amount} {currency}"


def _invite(m: SentMessage) -> bool:
    return any("t.me/+" in u for u in m.button_urls)


async def _wait_status(tg: EmulatorClient, user: int, want: str) -> None:
    for _ in range(200):
        if await tg.member_status(GROUP, user) == want:
            return
        await asyncio.sleep(0.05)
    raise DemoFailed(f"{NAMES[user]} is {await tg.member_status(GROUP, user)}, not {want}")


async def play(story: Story, tg: EmulatorClient, phone: str) -> None:
    """The whole story; `phone` is the local WeChat Pay host's sandbox phone page."""
    say = story.say
    say("\n== The owner sets up her group ==")
    await seed(tg)
    say("(Olga creates 'Traders Club' and makes the bot an admin: invite users + ban users)")
    setup = await story.write(
        OWNER, "/setup", lambda m: "group #" in (m.text or ""), chat=GROUP, where="Traders Club"
    )
    group_no = (setup.text or "").split("group #")[1].split()[0]
    await story.write(
        OWNER,
        f"/addplan {group_no} 30d 4.99USD 9.90CNY Monthly access",
        lambda m: "Plan #" in (m.text or ""),
    )

    say("\n== A buyer pays and gets in ==")
    groups = await story.write(BUYER, "/start", _has_buttons)
    plans = await story.press(BUYER, groups, "grp:", _has_buttons)
    methods = await story.press(BUYER, plans, "pln:", _has_buttons)
    checkout = await story.press(
        BUYER, methods, "pay:", lambda m: bool(m.button_urls), label="Sandbox test payment"
    )
    url = checkout.button_urls[0]
    since = await story._last(BUYER)
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            if r.status != 200:
                raise DemoFailed(f"checkout page answered {r.status}")
        say(f"Bob opens {url} and presses Pay")
        async with http.post(url) as r:
            page = await r.text()
            if r.status != 200 or 'data-status="paid"' not in page:
                raise DemoFailed("the sandbox payment was not accepted")
    say("  checkout page: Paid. Your invite is on its way in the chat.")
    invite = await story.bot_reply(
        BUYER, since, lambda m: any("t.me/+" in u for u in m.button_urls), "Bob"
    )
    link = next(u for u in invite.button_urls if "t.me/+" in u)
    say(f"Bob taps the invite: {await tg.join_by_link(BUYER, link)} to join")
    await _wait_status(tg, BUYER, "member")
    say("  Telegram: the bot approved Bob's request; Bob is now a member of Traders Club")

    say("\n== Bob forwards his link to a friend ==")
    since = await story._last(STRANGER)
    say(f"Sam taps the forwarded link: {await tg.join_by_link(STRANGER, link)} to join")
    await story.bot_reply(STRANGER, since, lambda m: "declined" in (m.text or ""), "Sam")
    for _ in range(200):
        if not await tg.join_requests(GROUP):
            break
        await asyncio.sleep(0.05)
    if await tg.member_status(GROUP, STRANGER) != "left" or await tg.join_requests(GROUP):
        raise DemoFailed("the stranger was not declined")
    say("  Telegram: Sam's request was declined; Sam is not in the group")
    await stars_chapter(story, tg, group_no)
    await wechat_chapter(story, tg, phone)
    await wallet_chapter(story, tg)


async def wallet_chapter(story: Story, tg: EmulatorClient) -> None:
    """The owner sells a top-up; a buyer tops up through the sandbox checkout, then buys the
    USD plan from the balance alone (no provider asked) and /wallet shows what is left."""
    say = story.say
    say("\n== Wallet: a buyer tops up, then pays for a plan from the balance ==")
    await story.write(OWNER, "/addtopup 10USD 1USD", lambda m: "Top-up #" in (m.text or ""))
    await tg.create_user(WALLET_BUYER, "Tia", username="tia", language_code="en")
    wallet = await story.write(WALLET_BUYER, "/wallet", _has_buttons)
    methods = await story.press(WALLET_BUYER, wallet, "tpu:", _has_buttons)
    checkout = await story.press(
        WALLET_BUYER, methods, "tpp:", lambda m: bool(m.button_urls), label="Sandbox"
    )
    since = await story._last(WALLET_BUYER)
    await _pay_on_checkout_page(story, checkout.button_urls[0], "Tia")
    await story.bot_reply(
        WALLET_BUYER, since, lambda m: "Balance: 11.00 USD" in (m.text or ""), "Tia"
    )
    groups = await story.write(WALLET_BUYER, "/start", _has_buttons)
    plans = await story.press(WALLET_BUYER, groups, "grp:", _has_buttons)
    methods = await story.press(WALLET_BUYER, plans, "pln:", _has_buttons, label="USD")
    await story.press(
        WALLET_BUYER,
        methods,
        "wpay:",
        lambda m: "paid from your wallet" in (m.text or ""),
        label="Wallet",
    )
    invite = await story.bot_reply(WALLET_BUYER, 0, _invite, "Tia")
    link = next(u for u in invite.button_urls if "t.me/+" in u)
    say(f"Tia taps the invite: {await tg.join_by_link(WALLET_BUYER, link)} to join")
    await _wait_status(tg, WALLET_BUYER, "member")
    say("  Telegram: the bot approved Tia's request; Tia is now a member of Traders Club")
    await story.write(WALLET_BUYER, "/wallet", lambda m: "Balance:" in (m.text or ""))


async def _pay_on_checkout_page(story: Story, url: str, who: str) -> None:
    """`who` opens the sandbox checkout page and presses Pay."""
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            if r.status != 200:
                raise DemoFailed(f"checkout page answered {r.status}")
        story.say(f"{who} opens {url} and presses Pay")
        async with http.post(url) as r:
            page = await r.text()
            if r.status != 200 or 'data-status="paid"' not in page:
                raise DemoFailed("the sandbox payment was not accepted")
    story.say("  checkout page: Paid.")


async def wechat_chapter(story: Story, tg: EmulatorClient, phone: str) -> None:
    """The CNY price, paid with WeChat Pay by scanning the QR code the bot sends (here: the
    local WeChat Pay host's sandbox phone page), by a buyer whose Telegram speaks Chinese."""
    say = story.say
    say("\n== WeChat Pay: a buyer scans the QR code and pays 9.90 CNY ==")
    await tg.create_user(WECHAT_BUYER, "Wei", username="wei", language_code="zh-hans")
    groups = await story.write(WECHAT_BUYER, "/start", _has_buttons)
    plans = await story.press(WECHAT_BUYER, groups, "grp:", _has_buttons)
    methods = await story.press(WECHAT_BUYER, plans, "pln:", _has_buttons, label="CNY")
    qr = await story.press(
        WECHAT_BUYER, methods, "pay:", lambda m: m.kind == "photo", label="微信支付"
    )
    order_no = next(c.split(":", 1)[1] for c in qr.callback_data if c.startswith("paidchk:"))
    since = await story._last(WECHAT_BUYER)
    async with aiohttp.ClientSession() as http:
        async with http.get(phone) as r:
            if r.status != 200 or order_no not in await r.text():
                raise DemoFailed(f"the sandbox phone does not list order {order_no}")
        say(f"Wei scans the QR code with WeChat ({phone}) and pays ¥9.90")
        async with http.post(f"{phone}/pay", data={"order_no": order_no}) as r:
            if r.status != 200 or f"Paid {order_no}" not in await r.text():
                raise DemoFailed(f"WeChat Pay did not take the payment for {order_no}")
    say("  WeChat Pay: paid; its signed, encrypted notification goes to /webhooks/wechatpay")
    invite = await story.bot_reply(WECHAT_BUYER, since, _invite, "Wei")
    link = next(u for u in invite.button_urls if "t.me/+" in u)
    say(f"Wei taps the invite: {await tg.join_by_link(WECHAT_BUYER, link)} to join")
    await _wait_status(tg, WECHAT_BUYER, "member")
    say("  Telegram: the bot approved Wei's request; Wei is now a member of Traders Club")


async def stars_chapter(story: Story, tg: EmulatorClient, group_no: str) -> None:
    """A Stars plan, bought in the chat with Telegram Stars, then refunded by the owner."""
    say = story.say
    say("\n== Telegram Stars: a second buyer pays in the chat, the owner refunds ==")
    await story.write(
        OWNER, f"/addplan {group_no} 30d 250XTR Stars monthly", lambda m: "Plan #" in (m.text or "")
    )
    await tg.create_user(STARS_BUYER, "Dana", username="dana", language_code="en")
    groups = await story.write(STARS_BUYER, "/start", _has_buttons)
    plans = await story.press(STARS_BUYER, groups, "grp:", _has_buttons)
    methods = await story.press(STARS_BUYER, plans, "pln:", _has_buttons, label="XTR")
    await story.press(
        STARS_BUYER,
        methods,
        "pay:",
        lambda m: "invoice above" in (m.text or ""),
        label="Telegram Stars",
    )
    invoice = next(m for m in reversed(await tg.sent_messages(STARS_BUYER)) if m.invoice)
    assert invoice.invoice is not None
    order_no = invoice.invoice["payload"]  # our order number
    price = _price(invoice.invoice["currency"], invoice.invoice["total_amount"])
    since = await story._last(STARS_BUYER)
    say(f"{NAMES[STARS_BUYER]} presses [Pay {price}] on the invoice and confirms")
    paid = await tg.pay_invoice(STARS_BUYER, invoice.message_id)
    if paid["status"] != "paid":
        raise DemoFailed(f"the Stars payment was not taken: {paid}")
    say(f"  Telegram: the bot approved the pre-checkout; Dana paid {price}")
    invite = await story.bot_reply(STARS_BUYER, since, _invite, "Dana")
    link = next(u for u in invite.button_urls if "t.me/+" in u)
    say(f"Dana taps the invite: {await tg.join_by_link(STARS_BUYER, link)} to join")
    await _wait_status(tg, STARS_BUYER, "member")
    say("  Telegram: the bot approved Dana's request; Dana is now a member of Traders Club")

    since_dana = await story._last(STARS_BUYER)
    asked = await story.write(OWNER, f"/refund {order_no}", lambda m: "requested" in (m.text or ""))
    await story.bot_reply(OWNER, asked.message_id, lambda m: "Refund:" in (m.text or ""), "Olga")
    await story.bot_reply(
        STARS_BUYER, since_dana, lambda m: "was refunded" in (m.text or ""), "Dana"
    )
    await _wait_status(tg, STARS_BUYER, "left")
    say(f"  Telegram: {price} went back to Dana; Dana was removed from Traders Club")


async def seed(tg: EmulatorClient) -> None:
    """The cast on the emulator: the bot, Olga (owner), Bob (buyer), Sam (stranger), and
    Olga's group with the bot as its admin (may invite users and ban them)."""
    await tg.create_bot(TOKEN, username=BOT_USERNAME)
    for uid, name in ((OWNER, "Olga"), (BUYER, "Bob"), (STRANGER, "Sam")):
        await tg.create_user(uid, name, language_code="en")
    await tg.create_chat(GROUP, creator_id=OWNER, title=GROUP_TITLE)
    await tg.promote(
        GROUP, BOT_ID, {"can_invite_users": True, "can_restrict_members": True}, by=OWNER
    )


@dataclass
class LocalStack:
    """The service wired to the Telegram emulator, the sandbox provider and local WeChat Pay
    and Alipay hosts, on a temporary SQLite database and a clock that can be moved forward."""

    emulator: TelegramEmulator
    tg: EmulatorClient
    service: Service
    clock: MovableClock
    wechatpay: FakeWechatPay
    alipay: FakeAlipay

    @property
    def tg_url(self) -> str:
        return self.emulator.base_url

    @property
    def web_url(self) -> str:
        return str(self.service.settings.web.public_url)


@asynccontextmanager
async def local_stack(
    *,
    emulator_host: str = "127.0.0.1",
    emulator_port: int = 0,
) -> AsyncIterator[LocalStack]:
    """Start the emulator, then the service against it (the demo's and the playground's
    shared wiring); stop both on the way out. The emulator's port: 0 picks a free one."""
    emulator = TelegramEmulator(bot_username=BOT_USERNAME)
    tg_url = await emulator.start(emulator_host, emulator_port)
    # The QR providers' hosts expire orders on the stack's movable clock (the playground's
    # clock control closes QR codes too); their signatures keep wall-clock time, which is
    # what the service checks them against.
    clock = MovableClock()
    wechatpay, alipay = (
        FakeWechatPay(host=emulator_host, clock=clock),
        FakeAlipay(host=emulator_host, clock=clock),
    )
    try:
        port = _free_port()
        public_url = f"http://127.0.0.1:{port}"
        qr_sections = {
            "wechatpay": await wechatpay.start_for(public_url),
            "alipay": await alipay.start_for(public_url),
        }
        with tempfile.TemporaryDirectory(prefix="gatepass-demo-") as tmp:
            settings = Settings.model_validate(
                {
                    **qr_sections,
                    "database": {"url": f"sqlite+aiosqlite:///{Path(tmp) / 'demo.db'}"},
                    "web": {
                        "host": "127.0.0.1",
                        "port": port,
                        "public_url": public_url,
                    },
                    "telegram": {"token": TOKEN, "api_server": tg_url},
                    "sandbox_pay": {"webhook_secret": "demo-sandbox-secret"},
                    "scheduler": {"outbox_interval_seconds": 0.1},
                }
            )
            service = Service(settings, clock, web_mounts=[sandbox_checkout_routes])
            tg = EmulatorClient(tg_url)
            try:
                await service.start()
                yield LocalStack(emulator, tg, service, clock, wechatpay, alipay)
            finally:
                await service.stop()
                await tg.close()
    finally:
        await wechatpay.stop()
        await alipay.stop()
        await emulator.stop()


async def run_demo(quiet: bool = False) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    try:
        async with local_stack() as stack:
            story = Story(stack.tg, quiet)
            story.say(
                f"gatepass demo: bot @{BOT_USERNAME} on a local Telegram emulator "
                f"({stack.tg_url}), web on {stack.web_url}, sandbox payments"
            )
            await play(story, stack.tg, stack.wechatpay.phone_url)
            wechat = await wechat_room_chapter(
                story.say, stack.service, stack.clock, stack.wechatpay.phone_url
            )
    except (DemoFailed, WechatFailed) as e:
        print(f"demo failed: {e}")
        return 1
    print(
        "\ndemo OK: the owner set up a plan, the buyer paid and got in, the stranger was "
        "turned away; a second buyer paid with Telegram Stars and the owner refunded it; a "
        "third paid 9.90 CNY with WeChat Pay by QR code; a fourth topped up her wallet and "
        "bought the plan from the balance"
        + (
            "; on WeChat, a room owner sold her room and a buyer paid and was added."
            if wechat
            else " (the WeChat chapter was skipped)."
        )
    )
    return 0
