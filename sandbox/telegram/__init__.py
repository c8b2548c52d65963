"""Telegram Bot API emulator (tests and `gatepass demo`). Details below; overview first.

An aiohttp server that speaks the Bot API (`POST|GET /bot{token}/{method}`, JSON, urlencoded or
multipart; `GET /file/bot{token}/{file_path}`) closely enough for an unmodified aiogram `Bot` +
`Dispatcher.start_polling` or a webhook, with Telegram's errors, plus a control API under
`/control/...` that plays the users and lets a test look inside.

    emulator = TelegramEmulator()                       # bot_username="gatepass_bot"
    base_url = await emulator.start()                   # "http://127.0.0.1:PORT"; port=0 picks one
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))
    tg = EmulatorClient(base_url)
    ...; await tg.close(); await bot.session.close(); await emulator.stop()

Standalone: `python -m sandbox.telegram --port 8081 [--host H] [--bot-username NAME]`.
Playground: GET /playground is a chat client for people (playground.py; `gatepass playground`
wires it to the service).

Bot API methods: getMe logOut close getUpdates setWebhook deleteWebhook getWebhookInfo
setMyCommands deleteMyCommands getMyCommands getFile sendMessage editMessageText
editMessageReplyMarkup deleteMessage answerCallbackQuery sendChatAction sendDocument sendPhoto
sendInvoice answerPreCheckoutQuery refundStarPayment createInvoiceLink editUserStarSubscription
getStarTransactions getChat getChatMember getChatAdministrators
getChatMemberCount banChatMember unbanChatMember leaveChat createChatInviteLink
editChatInviteLink revokeChatInviteLink approveChatJoinRequest declineChatJoinRequest
createChatSubscriptionInviteLink editChatSubscriptionInviteLink.
Any other method answers 404 "Not Found" (so an unmodelled call fails loudly).

Behaviour worth knowing (as on Telegram; error descriptions are Telegram's own where known)
- Token `<bot_id>:<secret>`; an unseen id becomes a bot (username `gatepass_bot` for the first
  one), a known id with another secret gets 401. Unknown method: 404 "Not Found".
- Privacy: a bot reaches a user privately only if the user wrote to it ("started" it) or sent a
  join request, to a chat where the bot is admin with can_invite_users, in the last 5 minutes
  (emulator clock). Otherwise 403 "bot can't initiate conversation with a user"; blocked: 403
  "bot was blocked by the user". A user the bot has never met at all (no private chat, no join
  request, no shared chat) is "400 chat not found". Group chats the bot is not in: "chat not found".
- allowed_updates: the last list given to getUpdates/setWebhook; default (never/empty) = all but
  chat_member, message_reaction, message_reaction_count. Updates of other types are dropped for
  good when created. chat_member needs the bot to be admin; chat_join_request needs
  can_invite_users. In groups a non-admin bot hears only commands, replies to it and service
  messages (privacy mode) unless registered with can_read_all_group_messages.
- Messages: parse_mode HTML/MarkdownV2/Markdown is applied (text comes back plain + entities;
  bad markup: 400 "can't parse entities: ..."); leading/trailing whitespace is trimmed; only
  inline keyboards appear in Message.reply_markup; editMessageText without reply_markup drops
  the keyboard; an identical edit: 400 "message is not modified: ...".
- Invite links: creator needs can_invite_users ("not enough rights to manage chat invite link");
  member_limit+creates_join_request: 400; names are cut to 32 chars (TDLib does); member_limit
  counts members who joined through the link and are still in; editChatInviteLink resets fields
  left out (TDLib takes all of them); a link another admin made is shown to the bot as
  "https://t.me/+XXXXXXXX...". Joins post service messages (new_chat_members/left_chat_member).
- Bans: until_date < 30 s or > 366 days away = forever (0); temporary bans lapse on the clock;
  unbanChatMember without only_if_banned removes a present member; basic groups ("group") have
  no unban (400) and only permanent bans.
- Channels (channels.py): posts carry sender_chat and reach admin bots as channel_post; an
  administrator's can_restrict_members is always true (TDLib: "always true for channels").
  Star subscription links: channels only; subscription_period must be 2592000, price
  1..10000; such a link takes no member_limit/join request (editChatInviteLink refuses them).
  Joining through one charges the user the price (recorded, GET /control/channel_subscriptions) and
  makes them a member whose ChatMemberMember.until_date is the paid period's end; a rejoin
  within a paid period is free. When the clock passes until_date (checked on every Bot API
  call and clock move) Telegram removes them ("left", chat_member update) unless renewed.
- Telegram Stars (stars.py): a Star payment is an incoming StarTransaction with the charge's id,
  a refund an outgoing one with the same id; getStarTransactions pages newest first (as Telegram
  answers, though the Bot API page says "chronological order"). An invoice link with
  subscription_period (2592000 only, XTR only, at most 10000 Stars) starts a subscription when
  paid; moving the clock past its expiration charges again (is_recurring, not
  is_first_recurring, the next subscription_expiration_date) unless the bot
  (editUserStarSubscription) or the user cancelled it; cancel / re-enable / a failed renewal
  send `subscription` updates (canceled / active / failed; a failed one charges no more).
- Deviations: error strings guessed, not verified: sendInvoice and createInvoiceLink field
  checks, SUBSCRIPTION_PERIOD_INVALID, refundStarPayment CHARGE_NOT_FOUND,
  editUserStarSubscription CHARGE_ID_INVALID / USER_ID_INVALID / SUBSCRIPTION_NOT_MODIFIED,
  getStarTransactions OFFSET_INVALID / LIMIT_INVALID, setMyCommands description check,
  setWebhook secret-token check, INVITE_HASH_EXPIRED for an unknown link,
  createChatSubscriptionInviteLink's CHAT_TYPE_INVALID / SUBSCRIPTION_PERIOD_INVALID /
  SUBSCRIPTION_AMOUNT_INVALID and the editChatInviteLink refusal of a subscription link's
  limit. Not modelled: inline mode, media other than documents, forum topics, reactions, polls,
  business, restrict/promoteChatMember via the Bot API, exportChatInviteLink/primary links,
  https-only/port rules of setWebhook (http is
  allowed), expiry of unanswered callback queries, Telegram's own flood limits (off unless set).

Control API (JSON bodies; errors are {"error": "..."} with 400/403/404/409)
  POST /control/reset                                    forget everything -> {"ok": true}
  POST /control/bots {token, username?, first_name?, can_read_all_group_messages?} -> User
  GET  /control/bots/{bot_id}   -> {user, webhook_url, allowed_updates, pending_updates,
                                    dropped_updates, commands, started_by, blocked_by}
  POST /control/users {id>0, first_name?, last_name?, username?, language_code?, is_bot?,
                       is_premium?} -> User  (also creates the user's private chat, id = user id)
  POST /control/users/{user_id}/block   {bot_id?} -> {"blocked": true}  (bot gets my_chat_member)
  POST /control/users/{user_id}/unblock {bot_id?} -> {"blocked": false}
  POST /control/chats {id<0, type: group|supergroup|channel, title, creator_id, username?,
                       description?} -> Chat
  GET  /control/chats/{chat_id} -> Chat + {"members": {user_id: status}}
  POST /control/chats/{chat_id}/admins {user_id, rights?: {can_invite_users: true, ...}, by?}
       -> ChatMember. Adds the user if absent. rights omitted = can_manage_chat,
       can_invite_users, can_restrict_members, can_delete_messages. The bot itself gets
       my_chat_member; admin bots get chat_member. by = acting admin (default: the creator).
  DELETE /control/chats/{chat_id}/admins/{user_id}?by= -> ChatMember (now "member")
  POST /control/chats/{chat_id}/members {user_id, by?} -> ChatMember (added by an admin)
  DELETE /control/chats/{chat_id}/members/{user_id}    -> {"status": "left"} (the user leaves)
  GET  /control/chats/{chat_id}/members/{user_id} -> {status, member: ChatMember, joined_via}
  GET  /control/chats/{chat_id}/messages?since=&bot_id=&sender=all&include_deleted=1
       -> [record]: messages sent by bots (sender=all: everyone), oldest first, edits applied.
       record = {message_id, chat_id, sender_id, kind: text|document|photo|invoice|service, date,
       text (or caption), entities, raw_text, parse_mode, reply_markup (any keyboard),
       edit_date, deleted, message (the Bot API Message), document? {file_id, file_name,
       mime_type, size, content_b64, caption}, photo? {the same, of the largest size},
       invoice? {every sendInvoice parameter}}
  GET  /control/chats/{chat_id}/invite_links -> [ChatInviteLink + creator_id, created_at,
       joined_count] (full URLs)
  POST /control/chats/{chat_id}/invite_links {creator_id, name?, expire_date?, member_limit?,
       creates_join_request?} -> ChatInviteLink (a link a human admin made in the app)
  GET  /control/chats/{chat_id}/join_requests -> [{user_id, date, invite_link}]
  POST /control/messages {from_id, text, chat_id? (default: the user's private chat), bot_id?,
       reply_to_message_id?} -> {message_id, chat_id}. A private message "starts" the bot (and
       unblocks it); a text starting with /cmd carries a bot_command entity.
  POST /control/callbacks {from_id, message_id, data, chat_id? (default private)}
       -> {callback_query_id}; 400 unless that bot message has a button with that data.
  GET  /control/callbacks/{id} -> {id, bot_id, user_id, chat_id, message_id, data, answered,
       answer: {text, show_alert, url, cache_time} | null}
  POST /control/join {user_id, invite_link} -> {result, chat_id}; result is "joined" |
       "requested" | "already_member" | "invalid" | "revoked" | "expired" | "banned" |
       "limit_reached". A join emits chat_member (with invite_link) to admin bots; a
       join-request link emits chat_join_request to bots with can_invite_users; a Star
       subscription link charges the user and joins them with until_date (channels.py).
  POST /control/invoices/pay {user_id, message_id, chat_id? (default private), timeout?=10}
       -> {status: paid|declined|timeout, telegram_payment_charge_id?, message_id?,
       error_message?}. Emits pre_checkout_query, waits for answerPreCheckoutQuery, then a
       successful_payment message. refundStarPayment later emits refunded_payment.
       deliver?=true: false records the payment (and its Star transaction) but loses the
       successful_payment update, as when a bot was down too long.
  GET  /control/payments -> [{telegram_payment_charge_id, currency, total_amount,
       invoice_payload, user_id, bot_id, refunded, ...}]
  POST /control/stars/links/pay {user_id, link, timeout?=10, deliver?=true} -> {status:
       paid|declined|timeout, telegram_payment_charge_id, ...}: the user pays an invoice link
       (createInvoiceLink) in their chat with its bot; a subscription link starts a
       subscription named by this first charge id.
  GET  /control/stars/subscriptions -> [{charge_id, bot_id, user_id, payload, total_amount,
       period, expires_at, canceled_by_bot, canceled_by_user, fail_next, lose_next, ended}]
  POST /control/stars/subscriptions/{charge_id} {action: cancel|renew|fail|lose} ->
       subscription. The user cancels / re-enables it (the bot gets a `subscription` update
       canceled / active); fail: its next renewal cannot be charged (update "failed"; it
       stops); lose: its next renewal is charged (and in the transactions) but its
       successful_payment update is lost, as while the bot was down past Telegram's 24 h.
  GET  /control/stars/transactions?bot_id= -> [StarTransaction], oldest first
  POST /control/stars/payments/{charge_id}/resend -> {message_id}: the payment's
       successful_payment message once more (a new message and update, the same charge)
  POST /control/stars/payments/{charge_id}/refund -> {refunded: true}: Telegram refunds a
       Star payment by itself (refunded_payment message; 409 if refunded already)
  GET  /control/calls?method=&bot_id=&since= -> [{seq, at, bot_id, method, params, ok,
       error_code, description}]  (form values stay strings; uploads: {filename, size})
  POST /control/rate_limits {global_per_second?, per_chat_per_second?} (null = off; per bot;
       getUpdates exempt) -> stats.  Over budget: 429 "Too Many Requests: retry after N".
  POST /control/faults {method? (null = any), count=1, error_code=429, description?,
       retry_after? (429 default 1), when: before|after, delay?: seconds, raw_body?: text,
       chat_id? (only calls whose chat_id is this chat; null = any)}
       -> fault (400 for an unknown method name).  Faults are used before rate limits.
       "after": the call takes effect but the client gets the error;
       raw_body: answer that text (e.g. an nginx 502 page) instead of JSON.
  DELETE /control/faults -> {"ok": true}
  GET  /control/stats -> {served_429, global_per_second, per_chat_per_second, faults}
  POST /control/clock {advance: seconds} -> {now, offset};  GET /control/clock -> same.
       Moving it charges the Stars subscriptions whose period ended.
  GET  /control/updates/pending?bot_id= -> {count, dropped, update_types}: updates not yet
       confirmed by a getUpdates offset (or, with a webhook, not yet delivered); dropped =
       filtered out by allowed_updates.
  GET  /control/files/{file_id} -> the raw bytes
  POST /control/chats/{chat_id}/posts {from_id, text} -> record: a channel post by its creator
       or an admin with can_post_messages (403 otherwise); admin bots get channel_post.
  POST /control/forwards {from_id, from_chat_id, message_id, bot_id?} -> {message_id, chat_id}:
       the user forwards a channel post to their private chat with the bot; the bot gets a
       message with forward_origin {type: "channel", date, chat, message_id}.
  POST /control/channel_subscriptions/renew {chat_id, user_id} -> subscription: Telegram charges the
       next period; until_date moves 30 days on (chat_member update member -> member).
       404 without a running subscription, 409 once it has run out.
  GET  /control/channel_subscriptions -> [{chat_id, user_id, invite_link, price, period, until_date,
       charges: [{at, amount, charge_id}], ended}]

Python client (sandbox.telegram.client.EmulatorClient(base_url), all async)
  reset()  create_bot(token, *, username, first_name, can_read_all_group_messages)
  bot_state(bot_id)  create_user(user_id, first_name=None, *, username, last_name,
  language_code, is_bot, is_premium)  create_chat(chat_id, *, creator_id, type="supergroup",
  title, username, description)  chat(chat_id)  promote(chat_id, user_id, rights=None, *, by)
  demote(chat_id, user_id, *, by)  add_member(chat_id, user_id, *, by)  leave_chat(chat_id,
  user_id)  send_text(from_id, text, *, chat_id, bot_id, reply_to_message_id) -> message_id
  press_button(from_id, message_id, data, *, chat_id) -> callback_query_id
  callback_answer(callback_query_id)  join_by_link(user_id, invite_link) -> result
  block_bot(user_id, *, bot_id)  unblock_bot(user_id, *, bot_id)
  pay_invoice(user_id, message_id, *, chat_id, timeout=10, deliver=True)  payments()
  pay_invoice_link(user_id, link, *, timeout, deliver)  star_subscriptions()
  star_subscription_action(charge_id, action)  star_transactions(bot_id=None)
  resend_payment(charge_id) -> message_id  telegram_refund(charge_id)
  sent_messages(chat_id, *, since, bot_id, include_deleted, everyone) -> [SentMessage]
  wait_for_message(chat_id, predicate=None, *, timeout=5, since=None) -> SentMessage
  member_status(chat_id, user_id) -> str  chat_member(chat_id, user_id)  invite_links(chat_id)
  create_invite_link(chat_id, creator_id, **fields)  join_requests(chat_id)
  calls(method=None, *, bot_id, since)  pending_updates(bot_id=None) -> int  file_bytes(file_id)
  set_rate_limit(global_per_second=None, per_chat_per_second=None)
  inject_fault(method=None, *, error_code=429, description, retry_after, count=1,
  when="before", delay=0, raw_body, chat_id)  clear_faults()  stats()  advance_clock(seconds)
  -> now  now()  post_in_channel(chat_id, from_id, text) -> message_id  forward_to_bot(from_id,
  from_chat_id, message_id, *, bot_id) -> message_id  renew_subscription(chat_id, user_id)
  channel_subscriptions()  close()
  SentMessage: message_id, chat_id, sender_id, kind, text, reply_markup, deleted, edit_date,
  raw; .message (Bot API dict), .buttons, .button_urls, .callback_data, .document,
  .document_bytes, .photo, .photo_bytes, .invoice.   Errors: EmulatorError(status, message).
"""

from .client import EmulatorClient, EmulatorError, SentMessage
from .server import TelegramEmulator

__all__ = ["EmulatorClient", "EmulatorError", "SentMessage", "TelegramEmulator"]
