"""Channels: posts by their admins, forwarding a post to a bot, and Star subscriptions.

A Star subscription link (createChatSubscriptionInviteLink, channels only) lets a user in
for `subscription_price` Stars per 30 days. Telegram charges the user, keeps the Stars, and
removes the member when a period ends unpaid; the bot only sees chat_member updates whose
ChatMemberMember carries `until_date`, the end of the paid period. Here a period is renewed
only by the control API (POST /control/channel_subscriptions/renew): the clock passing `until_date`
otherwise ends it (`expire_subscriptions`, run before every Bot API call and on clock moves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ControlError, bad_request
from .membership import MAX_LINK_NAME, _left, change_member, create_link
from .state import BotAccount, Chat, InviteLink, Member, StoredMessage, User
from .world import World

# "Currently, it must always be 2592000 (30 days)."
SUBSCRIPTION_PERIOD = 2592000
MAX_SUBSCRIPTION_PRICE = 10000


@dataclass
class StarSubscription:
    """One user's subscription to one channel: what they paid and until when."""

    chat_id: int
    user_id: int
    invite_link: str
    price: int
    period: int
    until_date: int
    charges: list[dict[str, Any]] = field(default_factory=list)  # {at, amount, charge_id}
    ended: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "chat_id": self.chat_id,
            "user_id": self.user_id,
            "invite_link": self.invite_link,
            "price": self.price,
            "period": self.period,
            "until_date": self.until_date,
            "charges": list(self.charges),
            "ended": self.ended,
        }


# --- posts and forwards --------------------------------------------------------------------


def post(world: World, chat: Chat, author: User, text: str) -> StoredMessage:
    """An admin posts in the channel (on behalf of the channel: sender_chat, no "from")."""
    if chat.type != "channel":
        raise ControlError(400, f"chat {chat.id} is not a channel")
    if not text:
        raise ControlError(400, "text is required")
    if not world.member(chat, author.id).right("can_post_messages"):
        raise ControlError(403, f"user {author.id} may not post in channel {chat.id}")
    stored = world.new_message(chat, author, {"text": text})
    world.deliver_group_message(chat, stored)
    return stored


def forward_to_bot(
    world: World, user: User, bot: BotAccount, chat: Chat, message_id: int
) -> StoredMessage:
    """The user forwards a channel post into their private chat with the bot. The bot gets
    a message whose forward_origin (MessageOriginChannel) names the channel and the post."""
    if chat.type != "channel":
        raise ControlError(400, f"chat {chat.id} is not a channel")
    original = chat.messages.get(message_id)
    if original is None or original.deleted:
        raise ControlError(404, f"no message {message_id} in chat {chat.id}")
    if not chat.username and not world.member(chat, user.id).present:
        raise ControlError(403, f"user {user.id} cannot see private channel {chat.id}")
    if user.id in bot.blocked_by:
        raise ControlError(403, f"user {user.id} has blocked the bot")
    fields: dict[str, Any] = {
        "forward_origin": {
            "type": "channel",
            "date": original.data["date"],
            "chat": chat.to_api(),
            "message_id": message_id,
        }
    }
    for key in ("text", "entities", "caption", "document"):
        if key in original.data:
            fields[key] = original.data[key]
    bot.started_by.add(user.id)
    private = world.chats[user.id]
    stored = world.new_message(private, user, fields)
    bot.updates.push("message", stored.data)
    return stored


# --- Star subscription links -----------------------------------------------------------------


def subscription_link(
    world: World,
    bot: BotAccount,
    chat: Chat,
    name: str | None,
    period: int | None,
    price: int | None,
) -> InviteLink:
    """createChatSubscriptionInviteLink's checks, then the link (rights checked by the caller)."""
    if chat.type != "channel":
        raise bad_request("CHAT_TYPE_INVALID")
    if period != SUBSCRIPTION_PERIOD:
        raise bad_request("SUBSCRIPTION_PERIOD_INVALID")
    if price is None or not 1 <= price <= MAX_SUBSCRIPTION_PRICE:
        raise bad_request("SUBSCRIPTION_AMOUNT_INVALID")
    link = create_link(world, chat, bot.id, {"name": (name or "")[:MAX_LINK_NAME] or None})
    link.subscription_period, link.subscription_price = period, price
    return link


def join_subscription(world: World, chat: Chat, user_id: int, link: InviteLink) -> str:
    """A user opens a subscription link: pays the first period in Stars and joins. One whose
    paid period is still running (they left meanwhile) comes back without paying again."""
    assert link.subscription_period and link.subscription_price
    now = world.now()
    key = (chat.id, user_id)
    sub = world.channel_subscriptions.get(key)
    if sub is None or sub.ended or sub.until_date <= now:
        sub = StarSubscription(
            chat_id=chat.id,
            user_id=user_id,
            invite_link=link.url,
            price=link.subscription_price,
            period=link.subscription_period,
            until_date=now + link.subscription_period,
        )
        _charge(world, sub, now)
        world.channel_subscriptions[key] = sub
    new = Member(user_id=user_id, status="member", until_date=sub.until_date, joined_via=link.url)
    chat.join_requests.pop(user_id, None)
    change_member(world, chat, user_id, new, actor_id=user_id, invite_link=link)
    return "joined"


def _charge(world: World, sub: StarSubscription, now: int) -> None:
    charge_id = f"stxsub{len(world.channel_subscriptions)}_{sub.user_id}_{len(sub.charges) + 1}"
    sub.charges.append({"at": now, "amount": sub.price, "charge_id": charge_id})


def renew(world: World, chat: Chat, user_id: int) -> StarSubscription:
    """Telegram charges the next period (control API): until_date moves one period on and
    the channel's admin bots get a chat_member update carrying the new until_date."""
    sub = world.channel_subscriptions.get((chat.id, user_id))
    if sub is None or sub.ended:
        raise ControlError(404, f"user {user_id} has no running subscription to {chat.id}")
    now = world.now()
    if sub.until_date <= now:
        raise ControlError(409, "the subscription has run out; the user must subscribe again")
    sub.until_date += sub.period
    _charge(world, sub, now)
    member = world.member(chat, user_id)
    if member.status == "member":
        new = Member(
            user_id=user_id,
            status="member",
            until_date=sub.until_date,
            joined_via=member.joined_via,
        )
        change_member(world, chat, user_id, new, actor_id=user_id)
    return sub


def expire_subscriptions(world: World) -> None:
    """Telegram removes a subscriber whose paid period ran out (they may subscribe again)."""
    now = world.now()
    for sub in list(world.channel_subscriptions.values()):
        if sub.ended or sub.until_date > now:
            continue
        sub.ended = True
        chat = world.chats.get(sub.chat_id)
        if chat is None:
            continue
        member = world.member(chat, sub.user_id)
        if member.status == "member" and member.until_date:
            _left(world, chat, sub.user_id, sub.user_id, Member(user_id=sub.user_id, status="left"))
