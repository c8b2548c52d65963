"""The emulator's channels: admins' posts, forwarding a post to a bot, and Star subscription
links (createChatSubscriptionInviteLink) with joining, renewal and expiry, through a real
aiogram Bot over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import ChatMemberMember, MessageOriginChannel, Update

from sandbox.telegram import EmulatorClient, EmulatorError, TelegramEmulator

TOKEN = "123456:TEST-token_secret"
BOT_ID = 123456
OWNER, ANN = 1001, 1002
CHANNEL, GROUP = -1005550001, -1001234567890
PERIOD = 2592000
ALL = ["message", "channel_post", "chat_member", "my_chat_member", "chat_join_request"]

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def emulator() -> AsyncIterator[TelegramEmulator]:
    emu = TelegramEmulator()
    await emu.start()
    yield emu
    await emu.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bot(emulator: TelegramEmulator) -> AsyncIterator[Bot]:
    b = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(emulator.base_url)))
    yield b
    await b.session.close()


@pytest_asyncio.fixture(loop_scope="module")
async def tg(emulator: TelegramEmulator) -> AsyncIterator[EmulatorClient]:
    client = EmulatorClient(emulator.base_url)
    await client.reset()
    await client.create_bot(TOKEN)
    await client.create_user(OWNER, "Olga", username="olga")
    await client.create_user(ANN, "Ann", username="ann")
    await client.create_chat(
        CHANNEL, creator_id=OWNER, type="channel", title="News", username="news_chan"
    )
    await client.create_chat(GROUP, creator_id=OWNER, title="Club")
    await client.promote(CHANNEL, BOT_ID, {"can_invite_users": True, "can_post_messages": True})
    await client.promote(GROUP, BOT_ID)
    yield client
    await client.close()


async def drain(bot: Bot) -> list[Update]:
    updates = await bot.get_updates(timeout=0, allowed_updates=ALL)
    if updates:
        await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    return updates


async def test_channel_admins_may_always_ban(tg: EmulatorClient, bot: Bot) -> None:
    me = await bot.get_chat_member(CHANNEL, BOT_ID)
    assert me.status == "administrator" and me.can_restrict_members is True
    assert me.can_invite_users is True


async def test_get_chat_by_username_and_a_forwarded_post(tg: EmulatorClient, bot: Bot) -> None:
    chat = await bot.get_chat("@news_chan")
    assert (chat.id, chat.type) == (CHANNEL, "channel")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.get_chat("@no_such_chan")
    await drain(bot)
    post = await tg.post_in_channel(CHANNEL, OWNER, "Market open")
    (update,) = await drain(bot)
    assert update.channel_post is not None and update.channel_post.sender_chat.id == CHANNEL
    with pytest.raises(EmulatorError) as refused:
        await tg.post_in_channel(CHANNEL, ANN, "not an admin")
    assert refused.value.status == 403
    await tg.forward_to_bot(OWNER, CHANNEL, post)
    (update,) = await drain(bot)
    message = update.message
    assert message is not None and message.chat.id == OWNER and message.text == "Market open"
    origin = message.forward_origin
    assert isinstance(origin, MessageOriginChannel)
    assert (origin.chat.id, origin.message_id) == (CHANNEL, post)


async def test_subscription_link_rules(tg: EmulatorClient, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="CHAT_TYPE_INVALID"):
        await bot.create_chat_subscription_invite_link(
            GROUP, subscription_period=PERIOD, subscription_price=10
        )
    with pytest.raises(TelegramBadRequest, match="SUBSCRIPTION_PERIOD_INVALID"):
        await bot.create_chat_subscription_invite_link(
            CHANNEL, subscription_period=PERIOD // 2, subscription_price=10
        )
    for price in (0, 10001):
        with pytest.raises(TelegramBadRequest, match="SUBSCRIPTION_AMOUNT_INVALID"):
            await bot.create_chat_subscription_invite_link(
                CHANNEL, subscription_period=PERIOD, subscription_price=price
            )
    link = await bot.create_chat_subscription_invite_link(
        CHANNEL, subscription_period=PERIOD, subscription_price=10000, name="VIP"
    )
    assert (link.subscription_period, link.subscription_price, link.name) == (PERIOD, 10000, "VIP")
    assert not link.creates_join_request and link.member_limit is None
    with pytest.raises(TelegramBadRequest, match="subscription link"):
        await bot.edit_chat_invite_link(CHANNEL, link.invite_link, member_limit=5)
    edited = await bot.edit_chat_subscription_invite_link(CHANNEL, link.invite_link, name="Gold")
    assert edited.name == "Gold" and edited.subscription_price == 10000


async def test_join_pay_renew_and_expire(tg: EmulatorClient, bot: Bot) -> None:
    link = await bot.create_chat_subscription_invite_link(
        CHANNEL, subscription_period=PERIOD, subscription_price=250
    )
    await drain(bot)
    assert await tg.join_by_link(ANN, link.invite_link) == "joined"
    (sub,) = await tg.channel_subscriptions()
    assert [c["amount"] for c in sub["charges"]] == [250]
    (joined,) = [u.chat_member for u in await drain(bot) if u.chat_member]
    member = joined.new_chat_member
    assert isinstance(member, ChatMemberMember) and member.until_date is not None
    assert int(member.until_date.timestamp()) == sub["until_date"]
    assert joined.invite_link is not None and joined.invite_link.subscription_price == 250
    got = await bot.get_chat_member(CHANNEL, ANN)
    assert isinstance(got, ChatMemberMember) and got.until_date == member.until_date

    await tg.advance_clock(PERIOD - 3600)  # renewed before the end: one period more
    renewed = await tg.renew_subscription(CHANNEL, ANN)
    assert renewed["until_date"] == sub["until_date"] + PERIOD and len(renewed["charges"]) == 2
    (update,) = [u.chat_member for u in await drain(bot) if u.chat_member]
    assert update.old_chat_member.status == update.new_chat_member.status == "member"
    assert isinstance(update.new_chat_member, ChatMemberMember)
    assert int(update.new_chat_member.until_date.timestamp()) == renewed["until_date"]

    await tg.advance_clock(3600 + 60)  # past the first end: still in
    assert await tg.member_status(CHANNEL, ANN) == "member"
    await tg.advance_clock(PERIOD)  # past the renewed end: Telegram removes her
    assert await tg.member_status(CHANNEL, ANN) == "left"
    (gone,) = [u.chat_member for u in await drain(bot) if u.chat_member]
    assert gone.new_chat_member.status == "left"
    with pytest.raises(EmulatorError) as late:
        await tg.renew_subscription(CHANNEL, ANN)
    assert late.value.status == 404
    # Subscribing again costs a new period.
    assert await tg.join_by_link(ANN, link.invite_link) == "joined"
    subs = await tg.channel_subscriptions()
    assert [len(s["charges"]) for s in subs] == [1]
