"""Every user-facing text, in English, under the stable key the code and the outbox use.

The key is the gettext message context (msgctxt) and the English text is the msgid, so
`make messages` extracts this file into bot/locales/messages.pot and the catalogs there
(bot/locales/<lang>/LC_MESSAGES/messages.po) translate it. Outbox rows store a key with its
params and language, so a key is never renamed: rows already queued must keep rendering. The
English text may change (the catalogs then need `make messages` and a translation).

Placeholders are str.format fields ({group}); a plural text names the param whose number picks
the form. A text with {until} gets a `<key>_lifetime` twin for access that never ends (see
bot.i18n.t), so no text ever says "until lifetime".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Text:
    key: str
    singular: str
    plural: str | None = None
    count: str | None = None  # the param whose value picks the plural form


CATALOG: dict[str, Text] = {}


def msg(key: str, text: str) -> None:
    """Register a text; pybabel extracts calls to it as (msgctxt, msgid) pairs."""
    if key in CATALOG:
        raise ValueError(f"message key {key!r} is defined twice")
    CATALOG[key] = Text(key, text)


def plural(key: str, count: str, singular: str, plural_text: str) -> None:
    """Register a text with plural forms, chosen by the number in the param `count`."""
    if key in CATALOG:
        raise ValueError(f"message key {key!r} is defined twice")
    CATALOG[key] = Text(key, singular, plural_text, count)


# --- buyer -------------------------------------------------------------------------------------
msg("welcome", "Hi {name}! Pick a group or channel to join:")
msg("no_groups", "No groups are on sale yet. Please check back later.")
msg("group_gone", "That group is not on sale any more. Send /start to see what is.")
msg("pick_plan", "{group}: pick a plan")
msg("no_plans", "{group} has no plans on sale right now.")
msg("plan_gone", "That plan is not on sale any more. Send /start to see what is.")
msg("pick_method", "{plan} ({duration}): how would you like to pay?")
msg("no_methods", "This plan cannot be paid with any method available right now.")
msg("method_stripe", "Card (Stripe) · {price}")
msg("method_sandbox", "Sandbox test payment · {price}")
msg(
    "checkout_ready",
    "Order {order_no}: {plan}, {price}.\n"
    "Tap the button to pay; your invite comes here right after the payment.",
)
msg("btn_pay", "Pay {price}")
msg(
    "checkout_failed",
    "The payment provider is not answering right now. Please try again in a minute.",
)
msg(
    "invite_request",
    "Payment received, thank you! Tap the button to ask to join {group}: I approve you at "
    "once. Your access runs until {until}.",
)
msg(
    "invite_request_lifetime",
    "Payment received, thank you! Tap the button to ask to join {group}: I approve you at "
    "once. Your access is for life.",
)
msg(
    "invite_request_given",
    "You have been given access to {group}! Tap the button to ask to join: I approve you at "
    "once. Your access runs until {until}.",
)
msg(
    "invite_request_given_lifetime",
    "You have been given access to {group}! Tap the button to ask to join: I approve you at "
    "once. Your access is for life.",
)
msg(
    "invite_single_given",
    "You have been given access to {group}! Here is your personal invite; it works once. "
    "Your access runs until {until}.",
)
msg(
    "invite_single_given_lifetime",
    "You have been given access to {group}! Here is your personal invite; it works once. "
    "Your access is for life.",
)
msg(
    "invite_single",
    "Payment received, thank you! Here is your personal invite to {group}; it works once. "
    "Your access runs until {until}.",
)
msg(
    "invite_single_lifetime",
    "Payment received, thank you! Here is your personal invite to {group}; it works once. "
    "Your access is for life.",
)
msg("btn_join", "Join {group}")
msg("access_extended", "Payment received: your access to {group} now runs until {until}.")
msg("access_extended_lifetime", "Payment received: you now have lifetime access to {group}.")
msg(
    "payment_mismatch",
    "We received a payment for order {order_no} that does not match its price, so no access "
    "was granted. The group owner has been told and will sort it out.",
)
msg(
    "join_declined",
    "Your request to join {group} was declined: it needs an active membership. Buy access "
    "here: {buy_link}",
)
msg(
    "removed_no_access",
    "You were removed from {group} because you have no active membership. Buy access here: "
    "{buy_link}",
)
msg(
    "renew_reminder",
    "Your access to {group} ends on {until}. Renew now to keep your place: {buy_link}",
)
msg("btn_renew", "Renew {group}")
msg(
    "access_ended",
    "Your access to {group} has ended, so you were removed from it. You are welcome back "
    "any time: buy access again here and you get a new invite at once: {buy_link}",
)
msg(
    "help",
    "I sell access to private groups and channels.\n"
    "/start — browse groups and buy access\n"
    "/my — your access, end dates, renew\n"
    "/orders — your orders\n"
    "/wallet — your balance, points and top-ups\n"
    "/pin — set or remove the PIN that guards paying from your wallet\n"
    "/cancel — stop a subscription renewing\n"
    "/link — link your WeChat account, for plans with groups on both\n"
    "/language — choose English or 中文\n"
    "/help — this message\n\n"
    "Group owners: add me to your group as an admin (invite users + ban users), send /setup "
    "there (for a channel: make me its admin, then send /setup @channel here or forward me a "
    "post), then here: /addplan, /addsub, /plans, /members, /grant, /revoke, /stats, "
    "/export, /refund, /broadcast, /starlink, /whitelist, /refundpolicy; wallet top-ups: "
    "/addtopup, /topups, /deltopup.",
)
msg(
    "unknown",
    "I did not understand that. Send /start to browse groups or /help to see what I can do.",
)
msg("language_pick", "Choose your language:")
msg("language_set", "Language set to English.")
msg("lifetime", "lifetime")
plural("duration_days", "count", "{count} day", "{count} days")
plural("duration_years", "count", "{count} year", "{count} years")
msg("title_access", "Access for {duration}")
msg("title_access_lifetime", "Lifetime access")
msg("title_subscription", "Subscription ({duration})")
msg("private_only", "Please send this command to me in a private chat.")

# --- owner: /setup, /addplan, /plans, /whitelist, /refundpolicy --------------------------------
msg(
    "setup_group_only",
    "Send /setup inside the group you want to sell access to (with me as an admin).",
)
msg("setup_not_admin", "Only the group's creator or an administrator can set it up.")
msg(
    "setup_bot_missing",
    "I cannot manage this group yet. Missing: {missing}. Make me an administrator with "
    "these rights, then send /setup again.",
)
msg("setup_other_owner", "This group is already registered by another owner.")
msg(
    "setup_ok",
    "{group} is registered as group #{group_id} (invites: {mode}). In a private chat with "
    "me, add a plan, for example:\n"
    "/addplan {group_id} 30d {prices} Monthly access",
)
msg(
    "setup_refreshed",
    "{group} (group #{group_id}, invites: {mode}) is set up and I have the rights I need.",
)
msg("setup_bad_mode", "'{mode}' is not an invite mode. Usage: /setup [join_request|single_use]")
msg("right_admin", "administrator status")
msg("right_can_invite_users", "the right to invite users via link")
msg("right_can_restrict_members", "the right to ban users")
msg(
    "usage_addplan",
    "Usage: /addplan <group> <duration> <price>... [title]\n"
    "e.g. /addplan 1 30d {prices} Monthly access  (duration: 30d, 12m, 1y, lifetime; a "
    "bundle: 1,2; currencies: {currencies})",
)
msg(
    "usage_addsub",
    "Usage: /addsub <group> <period> <price>... [title]\n"
    "e.g. /addsub 1 1m {prices} Monthly subscription  (period: 30d, 1m, 1y; currencies: "
    "{currencies})",
)
msg("currencies_none", "none until a payment provider is configured")
msg("missing_args", "Some arguments are missing.")
msg("needs_price", "At least one price is needed, like 4.99USD.")
msg("group_ref_invalid", "'{ref}' is not a group number; /plans lists yours.")
msg("group_not_found", "There is no group {ref}; /plans lists yours.")
msg("group_not_yours", "Group {ref} is not yours to manage.")
msg("plan_needs_group", "A plan needs at least one group.")
msg("plan_duplicate_currency", "Give each currency only one price.")
msg("sub_needs_period", "A subscription needs a renewal period.")
msg("duration_invalid", "'{text}' is not a duration like 30d, 12m, 1y or lifetime.")
msg("duration_too_short", "'{text}' is too short: a duration is at least one day.")
msg(
    "duration_too_long",
    "'{text}' is too long: a duration cannot be longer than ten years; use lifetime for more.",
)
msg("period_not_lifetime", "A subscription renews, so its period cannot be lifetime.")
msg("price_invalid", "'{text}' is not a price like 4.99USD.")
msg("currency_unknown", "'{currency}' is not a supported currency.")
msg("price_not_positive", "A price must be more than zero.")
msg("price_too_large", "'{text}' is too large for a price.")
msg("title_too_long", "The title is longer than 128 characters.")
msg("plan_group_twice", "Group {ref} is named twice; name each group once.")
msg("currency_not_payable", "No payment method here accepts {currency}; use one of: {currencies}.")
msg(
    "currency_no_provider",
    "No payment method is set up here, so no price can be paid; the bot's operator has to "
    "configure one.",
)
plural(
    "price_decimals",
    "places",
    "{currency} has {places} decimal place; '{amount}' has more.",
    "{currency} has {places} decimal places; '{amount}' has more.",
)
msg(
    "plan_added",
    "Plan #{plan_id} added: {title}, {duration}{recurring}, {prices}, for {groups}.\n"
    "Buyers find it with /start or this link: {buy_link}",
)
msg("recurring_suffix", ", renews automatically")
msg("plans_none", "You have no groups yet. Add me to your group as an admin and send /setup there.")
msg("plans_group", "Group #{group_id} {group} ({mode})")
msg("plans_plan", "  plan #{plan_id}: {title}, {duration}{recurring}, {prices}")
msg("plans_group_empty", "  no plans yet: /addplan {group_id} 30d {prices}")
msg(
    "refund_policy_revoke",
    "On a refund or dispute, access ends at once (policy: revoke). /refundpolicy keep lets "
    "it run to its end date instead.",
)
msg(
    "refund_policy_keep",
    "On a refund or dispute, access runs to its end date and does not renew (policy: keep). "
    "/refundpolicy revoke ends it at once instead.",
)
msg("refund_policy_bad", "'{policy}' is not a refund policy.")
msg("usage_refund_policy", "Usage: /refundpolicy [revoke|keep]")
msg(
    "usage_whitelist",
    "Usage: /whitelist <user> <group> (and /unwhitelist <user> <group>); <user> is "
    "@username or a numeric Telegram id",
)
msg("whitelist_added", "{user} may now stay in {group} without a paid membership.")
msg(
    "whitelist_removed",
    "{user} is off the whitelist of {group}; without paid access they will be removed the "
    "next time they join.",
)
msg("whitelist_same", "Nothing to change for {user} in {group}.")
msg(
    "owner_payment_mismatch",
    "Order {order_no} was paid {got}, but the order is {want}. No access was granted; "
    "refund it with the button below (or grant by hand).",
)

# --- buyer's tools: /my, /orders, /cancel ------------------------------------------------------
msg("my_none", "You have no access yet. Send /start to browse groups.")
msg("my_header", "Your access:")
msg("my_active", "• {group}: until {until}")
msg("my_active_renews", "• {group}: renews automatically on {until}")
msg("my_lifetime", "• {group}: lifetime access")
msg("my_pending", "• {group}: waiting for approval")
msg("my_lapsing", "• {group}: ended on {until}; renew now to keep your place")
msg("my_expired", "• {group}: ended on {date}")
msg("my_revoked", "• {group}: revoked on {date}")
msg("btn_stop_renew", "Stop auto-renew: {group}")
msg("btn_invite", "Invite to {group}")
msg(
    "my_not_active",
    "Your access to {group} is not active, so there is nothing to join. Send /start to buy "
    "it again.",
)
msg(
    "invite_single_replaced",
    "Someone else used your invite to {group}, so I revoked it. Here is a new one, for you "
    "only; it works once. Your access runs until {until}.",
)
msg(
    "invite_single_replaced_lifetime",
    "Someone else used your invite to {group}, so I revoked it. Here is a new one, for you "
    "only; it works once. Your access is for life.",
)
msg("invite_again", "Here is your invite to {group} again. Your access runs until {until}.")
msg("invite_again_lifetime", "Here is your invite to {group} again. Your access is for life.")
msg("invite_coming", "Your invite to {group} is on its way.")
msg("orders_none", "You have no orders yet. Send /start to browse groups.")
msg("orders_header", "Your orders, newest first:")
plural(
    "orders_header_capped",
    "total",
    "Your latest {shown} of {total} order:",
    "Your latest {shown} of {total} orders:",
)
msg("orders_line", "{order_no} · {date} · {plan} · {price} · {provider} · {status}")
msg("order_status_pending", "awaiting payment")
msg("order_status_paid", "paid")
msg("order_status_expired", "expired")
msg("order_status_cancelled", "cancelled")
msg("order_status_failed", "failed")
msg("order_status_refunded", "refunded")
msg(
    "cancel_none",
    "None of your access renews automatically, so there is nothing to cancel. /my shows "
    "your access.",
)
msg(
    "cancel_pick",
    "Which automatic renewal should I stop? You keep access until the end of the period you "
    "paid for.",
)
msg(
    "cancel_done",
    "Auto-renew is off for {group}: you will not be charged again. Your access runs until {until}.",
)
msg(
    "cancel_done_lifetime",
    "Auto-renew is off for {group}: you will not be charged again. Your access is for life.",
)
msg("cancel_not_found", "That access is not yours or no longer exists. /my shows yours.")
msg("cancel_nothing", "{group} does not renew automatically, so there is nothing to stop.")
msg(
    "cancel_unsupported",
    "The renewal of {group} cannot be stopped from here; please ask the group owner.",
)
msg(
    "cancel_failed",
    "The payment provider did not answer, so {group} still renews. Please try again in a minute.",
)

# --- owner's tools: /members, /grant, /revoke, /stats, /export ---------------------------------
msg("usage_members", "Usage: /members <group>  e.g. /members 1")
msg("usage_export", "Usage: /export <group>  e.g. /export 1")
msg(
    "usage_grant",
    "Usage: /grant <user> <group> <duration>\n"
    "e.g. /grant @bob 1 30d  (user: @username or numeric Telegram id; duration: 30d, 12m, "
    "1y, lifetime)",
)
msg("usage_revoke", "Usage: /revoke <user> <group>  e.g. /revoke @bob 1")
msg("too_many_args", "Too many arguments: '{extra}'.")
msg("user_ref_invalid", "'{ref}' is not a user: give @username or their numeric Telegram id.")
msg(
    "user_unknown",
    "I do not know {ref}: ask them to send /start to me, or use their numeric Telegram id.",
)
msg(
    "grant_done",
    "{user} has access to {group} until {until}. They are told, with an invite if they need one.",
)
msg(
    "grant_done_lifetime",
    "{user} has lifetime access to {group}. They are told, with an invite if they need one.",
)
msg(
    "grant_new_user",
    "I have never talked to {user}: ask them to send /start to @{bot}; /my then gives them "
    "their invite.",
)
msg("granted_by_owner", "The owner of {group} gave you access until {until}.")
msg("granted_by_owner_lifetime", "The owner of {group} gave you lifetime access.")
msg(
    "revoke_done",
    "{user} no longer has access to {group}: they are removed from it and told.",
)
msg("revoke_renewal_stopped", "Their automatic renewal is stopped as well.")
msg(
    "revoke_renewal_kept",
    "Careful: their subscription could not be stopped from here, so the payment provider "
    "may charge them again; cancel it there.",
)
msg("revoke_nothing", "{user} has no access to {group} to revoke.")
msg("revoke_owner", "{user} owns {group}; an owner's access cannot be revoked.")
msg(
    "access_revoked_owner",
    "The owner of {group} ended your access, so you were removed from it.",
)
plural(
    "members_header",
    "active",
    "{group} (#{group_id}): {active} active member ({lifetime} with lifetime access, "
    "{renewing} renewing automatically), {ended} ended.",
    "{group} (#{group_id}): {active} active members ({lifetime} with lifetime access, "
    "{renewing} renewing automatically), {ended} ended.",
)
msg("members_line", "{who}: until {until}")
msg("members_line_renews", "{who}: renews {until}")
msg("members_line_lifetime", "{who}: lifetime access")
plural(
    "members_more",
    "more",
    "… and {more} more member: /export {group_id} lists everyone.",
    "… and {more} more members: /export {group_id} lists everyone.",
)
msg("stats_header", "Figures as of {date}:")
plural(
    "stats_group",
    "active",
    "#{group_id} {group}: {active} active member",
    "#{group_id} {group}: {active} active members",
)
msg(
    "stats_revenue",
    "Revenue, net of refunds and disputes: {total} all time; {recent} in the last 30 days",
)
msg("stats_no_money", "nothing")
plural(
    "stats_unexpected",
    "count",
    "Unexpected charges to refund (paid twice, after a failure, wrong amount; not in "
    "revenue): {count} charge, {total}",
    "Unexpected charges to refund (paid twice, after a failure, wrong amount; not in "
    "revenue): {count} charges, {total}",
)
plural(
    "stats_renewals",
    "renewals",
    "{renewals} renewal in the last 30 days",
    "{renewals} renewals in the last 30 days",
)
msg("stats_churn", "Churn over 30 days: {ended} ended of {start} active 30 days ago ({rate})")
msg("stats_no_rate", "n/a")
msg("export_caption", "{group} (#{group_id}): {memberships} and {orders}, as of {date}.")
plural("count_memberships", "count", "{count} membership", "{count} memberships")
plural("count_orders", "count", "{count} order", "{count} orders")

# --- owner: /broadcast -------------------------------------------------------------------------
msg(
    "usage_broadcast",
    "Usage: /broadcast <group> <text>  e.g. /broadcast 1 The live session starts at 18:00 UTC.\n"
    "Every member with active access gets the text from me in a private message, as written.",
)
msg("broadcast_empty", "The message is empty: write it after the group.")
msg(
    "broadcast_too_long",
    "The message is {length} characters long; Telegram takes at most {max} in one message.",
)
msg("broadcast_no_members", "{group} has no members with active access right now: nothing sent.")
plural(
    "broadcast_queued",
    "recipients",
    "Broadcast #{broadcast_id} to {group} queued for {recipients} member. I will tell you "
    "here how it went once the message is out.",
    "Broadcast #{broadcast_id} to {group} queued for {recipients} members. I will tell you "
    "here how it went once every message is out.",
)
# The owner's own words, sent as they wrote them (plain text) in every language.
msg("broadcast_text", "{text}")
msg(
    "broadcast_report",
    "Broadcast #{broadcast_id} to {group} is done: delivered {delivered}, blocked the bot "
    "{blocked}, failed {failed} (of {recipients}).",
)

# --- billing: renewals, failed payments, refunds and disputes ----------------------------------
msg(
    "renewal_payment_failed",
    "The {amount} payment to renew {plan} (order {order_no}) did not go through. Your "
    "access runs until its end date; to keep it, please fix the payment: {link}",
)
msg("btn_fix_payment", "Fix payment")
msg(
    "payment_failed",
    "The payment for order {order_no} ({plan}) failed, so no access was granted. Send "
    "/start to try again.",
)
# No longer queued (a refund's buyer now hears buyer_refund_*); kept for rows queued before.
msg(
    "access_revoked_refund",
    "Order {order_no} was refunded, so your access to {group} has ended and you were "
    "removed from it.",
)
msg(
    "access_revoked_dispute",
    "The payment for order {order_no} is disputed with your bank, so your access to {group} "
    "has ended and you were removed from it.",
)
msg("owner_refund", "Refund: {amount} of order {order_no} ({plan}, bought by {buyer}).")
msg(
    "owner_extra_twice",
    "Paid twice: {buyer} paid {amount} again for order {order_no} ({plan}), which was "
    "already paid. It is not counted as revenue or as a renewal; refund it with the button "
    "below.",
)
msg(
    "owner_extra_after_failure",
    "Paid after a failed attempt: {buyer} paid {amount} for order {order_no} ({plan}), "
    "which had failed, so no access was granted. Refund it with the button below.",
)
msg("btn_refund_extra", "Refund {amount}")
msg(
    "owner_extra_refund",
    "Refunded: the extra {amount} {buyer} paid for order {order_no} ({plan}) went back. "
    "Their access is unchanged.",
)
msg(
    "owner_extra_dispute",
    "Dispute: {buyer}'s bank took back the extra {amount} paid for order {order_no} "
    "({plan}). Their access is unchanged.",
)
msg(
    "refund_requested",
    "Refund of {amount} (order {order_no}) requested; you will be told when it is done.",
)
msg("refund_already_requested", "A refund of this payment was requested already.")
msg("refund_already_done", "This payment ({amount}) has been refunded already.")
msg("refund_not_yours", "Only the owner of that plan can refund this payment.")
msg("refund_not_extra", "That payment is not an unexpected one; use /refund for an order.")
msg(
    "refund_by_hand",
    "{provider} payments cannot be refunded from the bot; refund {amount} (order "
    "{order_no}) in the provider's dashboard.",
)
msg("owner_refund_failed", "The refund of {amount} (order {order_no}) was refused: {reason}")
msg(
    "owner_refund_unconfirmed",
    "The refund of {amount} (order {order_no}) was sent, but the provider has not confirmed it "
    "in {days} days, so I stopped asking. Check it in your merchant console; if it lands "
    "later, I still record it.",
)
msg(
    "owner_dispute_won",
    "Dispute won: {amount} of order {order_no} ({plan}, {buyer}) is yours again.",
)
msg(
    "owner_dispute_won_restored",
    "Dispute won: {amount} of order {order_no} ({plan}, {buyer}) is yours again, and their "
    "access is back.",
)
msg(
    "owner_dispute_lost",
    "Dispute lost: {buyer}'s bank kept {amount} of order {order_no} ({plan}). Access stays ended.",
)
msg(
    "owner_dispute",
    "Dispute: {buyer}'s bank disputes {amount} of order {order_no} ({plan}). Answer it in "
    "your Stripe dashboard before its deadline.",
)

# --- refunds: the owner's /refund <order> and what the buyer hears (task: refunds) -----------
msg(
    "usage_refund",
    "Usage: /refund <order>  e.g. /refund GP7K2M9QXA4B  (order numbers: the order column "
    "of /export <group>, or the buyer's /orders)",
)
msg("order_ref_invalid", "'{ref}' is not an order number (they look like GP7K2M9QXA4B).")
msg("order_refund_unknown", "There is no order {order_no} of your plans.")
msg(
    "order_refund_not_paid",
    "Order {order_no} was not paid ({status}), so there is nothing to refund.",
)
msg("order_refund_already_done", "Order {order_no} has been refunded already ({amount}).")
msg(
    "order_refund_disputed",
    "Order {order_no} has nothing left to refund: its payment is disputed with the buyer's bank.",
)
msg(
    "order_refund_already_requested",
    "A refund of order {order_no} was requested already; you will be told when it is done.",
)
msg(
    "order_refund_requested",
    "Refund of {amount} for order {order_no} requested; you will be told when it is done.",
)
msg(
    "buyer_refund_ended",
    "Your payment of {amount} for {plan} (order {order_no}) was refunded, so your access to "
    "{groups} has ended and you were removed.",
)
msg(
    "buyer_refund_kept",
    "Your payment of {amount} for {plan} (order {order_no}) was refunded. Your access to "
    "{groups} stays until its end date and will not renew.",
)
msg("buyer_refund", "Your payment of {amount} for {plan} (order {order_no}) was refunded.")
msg(
    "buyer_refund_partial",
    "{amount} of your payment for {plan} (order {order_no}) was refunded. Your access is "
    "unchanged.",
)

# --- channels: /setup @channel, a forwarded channel post, /starlink ---------------------------
msg(
    "setup_channel_usage",
    "To register a group, send /setup inside it. To register a channel, make me its "
    "administrator (with the right to invite users via link), then send /setup "
    "@channelusername here, or forward me any post from the channel.\n"
    "Usage: /setup @channel [join_request|single_use]",
)
msg("channel_ref_invalid", "'{ref}' is not a channel username like @mychannel.")
msg(
    "setup_channel_not_found",
    "I cannot see the channel {ref}. Make me an administrator of the channel (with the right "
    "to invite users via link), then try again.",
)
msg("setup_channel_is_group", "{title} is a group, not a channel: send /setup inside the group.")
msg(
    "setup_channel_bot_missing",
    "I cannot manage the channel {title} yet. Missing: {missing}. Make me an administrator of "
    "the channel with these rights (a channel's administrators may always remove "
    "subscribers), then try again.",
)
msg("setup_channel_not_creator", "Only the creator of the channel {title} can register it.")
msg(
    "setup_channel_ok",
    "{title} is registered as channel #{group_id} (invites: {mode}). Add a plan here, for "
    "example:\n/addplan {group_id} 30d {prices} Monthly access\n"
    "or a Telegram Star subscription link: /starlink {group_id} 250XTR",
)
msg(
    "setup_channel_refreshed",
    "{title} (channel #{group_id}, invites: {mode}) is set up and I have the rights I need.",
)
msg("plans_channel", "Channel #{group_id} {group} ({mode})")
msg("plans_star_link", "  Star subscription link, {price} XTR per 30 days: {link}")
msg(
    "usage_starlink",
    "Usage: /starlink <channel> <price>XTR [name]  e.g. /starlink 2 250XTR  (a Telegram Star "
    "subscription for a channel: 1 to {max} Stars per 30 days)",
)
msg("starlink_price_invalid", "'{text}' is not a price in Stars like 250XTR.")
msg("starlink_price_range", "A Star subscription costs 1 to {max} Stars per 30 days, not {price}.")
msg("starlink_name_too_long", "The link's name is longer than 32 characters.")
msg(
    "starlink_channel_only",
    "{group} is a group: Telegram makes Star subscription links for channels only.",
)
msg("starlink_refused", "Telegram refused a Star subscription link for {group}: {reason}")
msg(
    "starlink_created",
    "Star subscription link for {group}, {price} XTR per 30 days:\n{link}\n"
    "Post it wherever you like. Telegram charges the subscribers, keeps the Stars for the "
    "channel (they never pass through me, so they are not in /stats revenue), renews every 30 "
    "days and removes those who stop paying. I record who joins through it: /members "
    "{group_id}, /stats, /export {group_id}.",
)
msg("members_line_star", "{who}: Star subscription, paid until {ends}")
plural(
    "members_star",
    "count",
    "{count} of them through a Telegram Star subscription (Telegram bills, renews and "
    "removes them).",
    "{count} of them through a Telegram Star subscription (Telegram bills, renews and "
    "removes them).",
)
plural(
    "stats_star",
    "count",
    "  {count} of them through a Telegram Star subscription: Telegram collects and keeps "
    "those Stars, so they are not in the revenue below",
    "  {count} of them through a Telegram Star subscription: Telegram collects and keeps "
    "those Stars, so they are not in the revenue below",
)

# --- the provider's return pages (gatepass/return_pages.py) ---------------------------------
msg("page_paid_title", "Payment received")
msg(
    "page_paid",
    "Thank you! {plan} for {groups} is paid. Your personal invite is waiting in your chat "
    "with the bot.",
)
msg("page_pending_title", "Confirming your payment")
msg(
    "page_pending",
    "Thank you! We are confirming your payment for {plan} ({groups}). As soon as it is "
    "confirmed, your personal invite arrives in your chat with the bot; this page updates "
    "by itself.",
)
msg("page_not_paid_title", "Not paid")
msg(
    "page_not_paid",
    "{plan} for {groups} was not paid, and nothing was charged. To try again, send /start to "
    "the bot.",
)
msg("page_unknown_title", "Order not found")
msg("page_unknown", "There is no such order. Please start again from the bot with /start.")
msg("page_state_paid", "Paid")
msg("page_state_pending", "Being confirmed")
msg("page_state_not_paid", "Not paid")
msg("page_state_unknown", "Unknown order")
msg("page_plan", "Plan")
msg("page_groups", "Access to")
msg("page_amount", "Amount")
msg("page_order", "Order")


# --- Telegram Stars (billing/stars.py, bot/handlers/stars.py) -------------------------------
msg("method_stars", "Telegram Stars · {price}")
msg(
    "stars_invoice_sent",
    "Order {order_no}: {plan}. Pay the invoice above with Telegram Stars; your invite comes "
    "here right after the payment.",
)
msg("stars_order_unknown", "This invoice is not for an order of ours. Send /start to buy.")
msg(
    "stars_order_not_yours",
    "This invoice was made for someone else. Send /start to buy your own access.",
)
msg(
    "stars_order_not_pending",
    "This order can no longer be paid (it was paid, expired or cancelled). Nothing was "
    "charged; send /start to buy again.",
)
msg(
    "stars_amount_changed",
    "The price on this invoice does not match the order. Nothing was charged; send /start "
    "to buy again.",
)
msg(
    "stars_sub_period",
    "A Telegram Stars subscription renews every 30 days: use 30d as its period.",
)
msg("stars_sub_too_much", "A Telegram Stars subscription costs at most {most} XTR a period.")
msg(
    "renewal_payment_failed_nolink",
    "The {amount} payment to renew {plan} (order {order_no}) did not go through. Your "
    "access runs until its end date; to keep it, make sure the payment can go through "
    "(for Telegram Stars: enough Stars in your balance).",
)


# --- the WeChat bot: what buyers and owners say to it (bot/wechat/*.py) -----------------------
# WeChat has no buttons or deep links: lists are numbered and answered with a number, and the
# buyer's words are 菜单 (menu), 我的 (my), 订单 (orders), 续费 (renew), 帮助 (help).
msg(
    "wechat_help",
    "I sell access to WeChat rooms. Send me:\n"
    "菜单 (menu) — the rooms for sale; reply with a number to choose\n"
    "我的 (my) — your access and end dates\n"
    "订单 (orders) — your orders\n"
    "钱包 (wallet) — your balance and points; top up\n"
    "续费 (renew) — buy more time for a room you have\n"
    "/link — link this account with your Telegram one\n"
    "English / 中文 — choose the language\n"
    "帮助 (help) — this message\n\n"
    "Room owners: make me an admin of your room and send /setup in it; then here: /addplan, "
    "/plans, /members, /grant, /revoke, /stats, /refund, /guard.",
)
msg("wechat_unknown", "I did not understand that. Send 菜单 (menu) to buy, or 帮助 (help).")
msg("wechat_language_usage", "Send English or 中文 (or: language en, language zh).")
msg("wechat_rooms", "Rooms for sale. Reply with a number:")
msg("wechat_no_rooms", "No rooms are on sale yet. Please check back later.")
msg("wechat_renew_pick", "Which room would you like more time for? Reply with a number:")
msg("wechat_renew_none", "You have no room access to renew. Send 菜单 (menu) to see the rooms.")
msg("wechat_pick_plan", "{group}: reply with the number of a plan:")
msg("wechat_pick_method", "{plan} ({duration}): reply with a number to choose how to pay:")
msg("wechat_group_gone", "That room is not on sale any more. Send 菜单 (menu) to see what is.")
msg("wechat_plan_gone", "That plan is not on sale any more. Send 菜单 (menu) to see what is.")
msg("wechat_pick_none", "There is no list to choose from. Send 菜单 (menu) to see the rooms.")
msg(
    "wechat_pick_range",
    "Reply with a number from 1 to {count}, or send 菜单 (menu) to start again.",
)
msg(
    "wechat_checkout_link",
    "Order {order_no}: {plan}, {price}.\nPay here: {link}\n"
    "I add you to the room right after the payment.",
)
plural(
    "wechat_qr_text",
    "minutes",
    "Order {order_no}: {plan}, {price}.\n"
    "Scan the QR code above with {app} to pay; it works for {minutes} more minute. Or open the "
    "pay page: {link}\nI add you to the room right after the payment.",
    "Order {order_no}: {plan}, {price}.\n"
    "Scan the QR code above with {app} to pay; it works for {minutes} more minutes. Or open the "
    "pay page: {link}\nI add you to the room right after the payment.",
)
msg(
    "wechat_qr_link_only",
    "Order {order_no}: {plan}, {price}.\nOpen the pay page and scan its QR code with {app}: "
    "{link}\nI add you to the room right after the payment.",
)
msg("wechat_my_none", "You have no access yet. Send 菜单 (menu) to see the rooms.")
msg("wechat_my_renew_hint", "Send 续费 (renew) to buy more time.")
msg("wechat_orders_none", "You have no orders yet. Send 菜单 (menu) to see the rooms.")
msg("wechat_setup_room_only", "Send /setup inside the room you want to sell access to.")
msg("wechat_setup_not_owner", "Only the room's owner can set it up.")
msg(
    "wechat_setup_bot_not_admin",
    "I cannot manage this room yet: make me an admin of the room, then send /setup again.",
)
msg(
    "wechat_setup_ok",
    "{group} is registered as room #{group_id}. Newcomers without access: {guard}. In a "
    "private chat with me, add a plan, for example:\n/addplan {group_id} 30d {prices} Monthly",
)
msg(
    "wechat_setup_refreshed",
    "{group} (room #{group_id}) is set up. Newcomers without access: {guard}.",
)
msg("guard_report", "reported to you")
msg("guard_remove", "removed")
msg("usage_guard", "Usage: /guard <room> report|remove  e.g. /guard 1 remove")
msg(
    "guard_set_report",
    "{group} (room #{group_id}): newcomers without access are now reported to you, not removed.",
)
msg("guard_set_remove", "{group} (room #{group_id}): newcomers without access are now removed.")
msg("wechat_buy_hint", "Buyers send 菜单 (menu) to me to buy it.")
msg(
    "wechat_plan_added",
    "Plan #{plan_id} added: {title}, {duration}{recurring}, {prices}, for {groups}.\n{buy_link}",
)
msg(
    "wechat_plans_none",
    "You have no rooms yet. Make me an admin of your room and send /setup in it.",
)
msg(
    "wechat_usage_grant",
    "Usage: /grant <user> <room> <duration>\n"
    "e.g. /grant wxid_abc123 1 30d  (user: the id or name /members shows; duration: 30d, "
    "12m, 1y, lifetime)",
)
msg("wechat_usage_revoke", "Usage: /revoke <user> <room>  e.g. /revoke wxid_abc123 1")
msg("wechat_user_ref_invalid", "'{ref}' is not a user: give their id (wxid_...) or name.")
msg(
    "wechat_user_unknown",
    "I do not know {ref}: ask them to send me a message, or use their id (wxid_...).",
)
msg(
    "wechat_grant_new_user",
    "I have never talked to {user}: ask them to add me as a contact and send me 我的 (my).",
)

# --- WeChat Pay / Alipay: QR code in the chat, "I have paid", the pay page -------------------
msg("method_wechatpay", "WeChat Pay · {price}")
msg("method_alipay", "Alipay · {price}")
msg("scan_app_wechat", "WeChat")
msg("scan_app_alipay", "Alipay")
plural(
    "qr_caption",
    "minutes",
    "Order {order_no}: {plan}, {price}.\n"
    "Scan this QR code with {app} to pay. It works for {minutes} more minute; your invite "
    "comes here right after the payment.",
    "Order {order_no}: {plan}, {price}.\n"
    "Scan this QR code with {app} to pay. It works for {minutes} more minutes; your invite "
    "comes here right after the payment.",
)
msg(
    "qr_link_only",
    "Order {order_no}: {plan}, {price}.\n"
    "Open the pay page and scan its QR code with {app}; your invite comes here right after "
    "the payment.",
)
msg("btn_open_pay_page", "Open pay page")
msg("btn_paid_check", "I have paid")
msg(
    "paid_check_received",
    "Payment received for order {order_no}, thank you! Your invite is coming in this chat.",
)
msg(
    "paid_check_already",
    "Order {order_no} is paid already. Your invite is in this chat (or on its way).",
)
plural(
    "paid_check_open",
    "minutes",
    "The payment for order {order_no} has not arrived yet. The QR code works for {minutes} "
    "more minute; press the button again once you have paid.",
    "The payment for order {order_no} has not arrived yet. The QR code works for {minutes} "
    "more minutes; press the button again once you have paid.",
)
msg(
    "paid_check_expired",
    "Order {order_no} has expired and can no longer be paid. Send /start to buy again.",
)
msg(
    "paid_check_closed",
    "Order {order_no} is closed and can no longer be paid. If you paid for it, the owner has "
    "been told and will sort it out with you; send /start to buy again.",
)
msg(
    "paid_check_review",
    "A payment for order {order_no} was reported, but it does not match the order. The "
    "owner has been told and will sort it out with you.",
)
msg("paid_check_not_yours", "This order belongs to someone else. Send /start to buy your own.")
msg("paid_check_unknown", "There is no such order. Send /start to buy.")
msg(
    "paid_check_error",
    "The payment provider is not answering right now. Please press the button again in a minute.",
)
msg(
    "paid_check_too_soon",
    "Order {order_no} was checked with the payment provider a moment ago. Please wait a few "
    "seconds, then press the button again.",
)
msg("pay_page_title", "Pay with {app}")
msg("pay_page_scan", "Scan the QR code with {app} to pay.")
msg(
    "pay_page_phone_hint",
    "Paying on this phone? Long-press the QR code to save it, then pick it from the album "
    "in {app}'s scanner.",
)
msg("pay_page_time_left", "Time left")
msg("pay_page_state_waiting", "Waiting for payment")
msg("pay_page_paid_title", "Paid")
msg("pay_page_paid", "Payment received — your invite is in the chat.")
msg("pay_page_expired_title", "Expired")
msg(
    "pay_page_expired",
    "This order has expired and can no longer be paid. Send /start in the chat to buy again.",
)
msg("pay_page_state_expired", "Expired")
msg("pay_page_closed_title", "Closed")
msg(
    "pay_page_closed",
    "This order is closed and can no longer be paid. If you paid for it, the payment was "
    "refunded or the owner will sort it out with you; please do not pay for it again.",
)
msg("pay_page_state_closed", "Closed")

# -- one person on two platforms (/link, membership/links.py) and WeChat rooms -------------
# A param named `platform` holds a platform id ("telegram", "wechat"); bot.i18n.t renders it
# with the platform_<id> text in the reader's language.
msg("platform_telegram", "Telegram")
msg("platform_wechat", "WeChat")
msg(
    "link_code_issued",
    "Your link code: {code}\nSend /link {code} to me on {platform} within {minutes} minutes "
    "to link your two accounts; a plan with groups on both then gives you access on both.",
)
plural(
    "link_bound",
    "moved",
    "Linked with your {platform} account {name}. {moved} group you bought access to was "
    "moved to that account; I am getting you in now.",
    "Linked with your {platform} account {name}. {moved} groups you bought access to were "
    "moved to that account.",
)
msg(
    "link_code_unknown",
    "That is not a link code I know. Usage: /link (get a code here) or /link CODE (a code "
    "from the other platform).",
)
msg(
    "link_code_expired",
    "That link code has expired (a code lasts 10 minutes). Send /link on the other platform "
    "for a new one.",
)
msg(
    "link_code_used",
    "That link code was used already. Send /link on the other platform for a new one.",
)
msg(
    "link_own_platform",
    "That code was made on this platform: send /link CODE to me on the other platform instead.",
)
msg("link_already", "This account is already linked to a {platform} account.")
msg(
    "link_needed",
    "You have access to {group} on {platform}, but no {platform} account linked yet. Send "
    "/link here and send the code to me on {platform}: I add you as soon as they are linked.",
)
msg(
    "room_added",
    "Payment received, thank you! I added you to {group}. Your access runs until {until}.",
)
msg(
    "room_added_lifetime",
    "Payment received, thank you! I added you to {group}. Your access is for life.",
)
msg(
    "room_added_given",
    "You have been given access to {group}, and I added you to it. Your access runs until {until}.",
)
msg(
    "room_added_given_lifetime",
    "You have been given access to {group}, and I added you to it. Your access is for life.",
)
msg(
    "room_invited",
    "Payment received, thank you! {group} cannot take you directly: scan the room's QR code I "
    "sent you to join (the owner may have to confirm). Your access runs until {until}.",
)
msg(
    "room_invited_lifetime",
    "Payment received, thank you! {group} cannot take you directly: scan the room's QR code I "
    "sent you to join (the owner may have to confirm). Your access is for life.",
)
msg(
    "room_invited_given",
    "You have been given access to {group}. The room cannot take you directly: scan the "
    "room's QR code I sent you to join (the owner may have to confirm). Your access runs "
    "until {until}.",
)
msg(
    "room_invited_given_lifetime",
    "You have been given access to {group}. The room cannot take you directly: scan the "
    "room's QR code I sent you to join (the owner may have to confirm). Your access is for "
    "life.",
)
msg(
    "owner_room_invited",
    "{buyer} has access to {group}, but the room takes no direct add (over 40 members, or "
    "invite confirmation on): I sent them its QR code. Confirm their request if WeChat asks.",
)
msg(
    "owner_intruder",
    "{who} joined {group} without an active membership. I left them in; to have such members "
    "removed, send /guard {group_id} remove.",
)
msg(
    "owner_intruder_removed",
    "{who} joined {group} without an active membership, so I removed them. To be told "
    "instead, send /guard {group_id} report.",
)
msg(
    "guard_bad",
    'The guard is "report" or "remove", not "{guard}". Usage: /guard <group> report|remove',
)
# -- WeChat: how the gateway writes what Telegram shows as buttons (bot/wechat/gateway.py) --
# WeChat has no buttons: "{buy_link}" in a text, and the renew button, become what to reply.
msg("wechat_buy_link", 'send me "menu"')
msg("wechat_renew_line", 'To renew {group}, reply "renew".')
# -- wallet ledger (billing/wallet.py, billing/wallet_pin.py): rule errors --
msg("wallet_insufficient", "Your wallet does not hold enough for this; nothing was taken.")
msg("pin_bad", "A PIN is 4 to 6 digits, like 4821.")
# -- the wallet at checkout: paying with balance and points, the PIN (issue 11) --
msg("method_wallet", "Wallet · {part}")
msg("method_wallet_plus", "Wallet {part} + {method} {rest}")
msg("paid_part_balance", "{amount} balance")
msg("paid_part_points", "{points} points ({amount})")
msg("provider_name_stripe", "card (Stripe)")
msg("provider_name_wechatpay", "WeChat Pay")
msg("provider_name_alipay", "Alipay")
msg("provider_name_sandbox", "sandbox payment")
msg(
    "wallet_nothing_to_use",
    "Your wallet has nothing to pay this plan with. Pick another way to pay.",
)
msg(
    "wallet_not_enough",
    'Your wallet does not cover this plan: {rest} is left to pay. Pick "Wallet +" a '
    "payment method.",
)
msg(
    "wallet_paid",
    "Order {order_no}: {plan} paid from your wallet ({amount}). You earned {points} "
    "points. Your invite follows.",
)
msg(
    "wallet_held",
    "Order {order_no}: {amount} from your wallet is reserved for this order. If it is "
    "not paid in time, it comes back to your wallet.",
)
msg("wallet_off", "The wallet is turned off on this service.")
msg("pin_ask", "Send your 4-6 digit wallet PIN to pay. I delete the message right away.")
msg("pin_format", "A PIN is 4 to 6 digits. Send your wallet PIN again.")
plural("pin_wrong", "tries", "Wrong PIN, {tries} try left.", "Wrong PIN, {tries} tries left.")
msg("pin_locked", "Too many wrong PINs: wallet payments are locked until {time}.")
msg("pin_usage", "Usage: /pin <4-6 digits> sets your wallet PIN; /pin off <pin> removes it.")
msg(
    "pin_set",
    "Your wallet PIN is set: paying from the wallet now asks for it. I deleted your message.",
)
msg(
    "pin_already_set",
    "You have a wallet PIN already. To change it, remove it with /pin off <pin>, then set "
    "the new one.",
)
msg("pin_cleared", "Your wallet PIN is removed.")
msg("pin_none", "You have no wallet PIN. Set one with /pin <4-6 digits>.")
msg(
    "stats_wallet_spent",
    "Paid from wallets: {balance} balance, {points} in points (not in revenue above).",
)
msg("stats_topups", "Top-ups sold: {total}")
msg("stats_outstanding", "Balance owed to buyers (all wallets, a liability, not revenue): {total}")
msg("order_refund_wallet", "Order {order_no}: {amount} went back to the buyer's wallet.")


# --- the wallet: top-ups (billing/topup.py, bot/handlers/wallet.py) -----------------------
msg("wallet_header", "Your wallet")
msg("wallet_balance", "Balance: {amount}")
msg("wallet_held_line", "({held} held for an open order)")
msg("wallet_held_note", "Held amounts come back if that order is not paid.")
msg("wallet_points", "Points: {points}")
msg("wallet_points_unit", "points")
msg("wallet_empty", "Your wallet is empty.")
msg("wallet_entries_header", "Latest entries:")
msg("wallet_entry", "{date}  {amount}  {reason}")
msg("wallet_reason_topup", "top-up")
msg("wallet_reason_bonus", "top-up bonus")
msg("wallet_reason_hold", "for an order")
msg("wallet_reason_release", "hold released")
msg("wallet_reason_refund", "refund")
msg("wallet_reason_earn", "points earned")
msg("wallet_reason_reverse", "points reversed")
msg("wallet_reason_adjust", "adjustment")
msg("wallet_topup_pick", "Top up your balance:")
msg("wallet_no_topups", "No top-ups are on sale yet.")
msg("topup_title", "Top-up {amount}")
msg("topup_title_bonus", "Top-up {amount} (+{bonus} bonus)")
msg("topup_pick_method", "{topup}: choose how to pay.")
msg("topup_gone", "This top-up is no longer on sale. Send /wallet to see the current ones.")
msg(
    "wallet_topped_up",
    "Your top-up is paid: {amount} plus a {bonus} bonus is in your wallet. Balance: {balance}.",
)
msg(
    "wallet_topup_refunded",
    "Order {order_no}: {amount} was refunded to you, and {taken} was taken back from your "
    "wallet balance.",
)
msg(
    "addtopup_usage",
    "Usage: /addtopup <pay> [bonus], e.g. /addtopup 100CNY 10CNY (pay 100, get 110).",
)
msg("deltopup_usage", "Usage: /deltopup <n> (the number /topups shows).")
msg("topup_added", "Top-up #{n} added: {topup}. Buyers see it in /wallet.")
msg("topup_removed", "Top-up #{n} is no longer on sale: {topup}.")
msg("topups_none", "You sell no top-ups. Add one with /addtopup 100CNY 10CNY.")
msg("topups_header", "Your top-ups:")
msg("topups_line", "  #{n}: {topup}")
msg("topup_not_owner", "Only a group owner or an admin can sell top-ups.")
msg("topup_not_payable", "No configured payment method takes top-ups in {currency}.")
msg("topup_no_stars", "Top-ups cannot be sold for Telegram Stars.")
msg("topup_bonus_currency", "The bonus {bonus} must be in {currency}, like the price.")
msg("topup_amount_zero", "A top-up must cost more than zero.")
msg("topup_too_large", "A top-up may credit at most {most}.")
msg("topup_unknown", "There is no top-up #{n} of yours on sale.")
msg(
    "topup_spent",
    "Order {order_no} is a top-up of {credited}, but the buyer's balance is {balance}: "
    "they spent it, so nothing was refunded.",
)
msg("page_topup", "Top-up")
msg(
    "page_topup_paid",
    "Thank you! {plan} is paid. The balance is in your wallet: send /wallet to the bot.",
)
msg(
    "page_topup_pending",
    "Thank you! We are confirming your payment for {plan}. As soon as it is confirmed, "
    "the balance is in your wallet; this page updates by itself.",
)
msg(
    "page_topup_not_paid",
    "{plan} was not paid, and nothing was charged. To try again, send /wallet to the bot.",
)
msg("pay_page_topup_paid", "Payment received — the balance is in your wallet.")
msg(
    "paid_check_received_topup",
    "Payment received for order {order_no}, thank you! The balance is in your wallet: "
    "send /wallet.",
)
msg(
    "paid_check_already_topup",
    "Order {order_no} is paid already. The balance is in your wallet: send /wallet.",
)
msg(
    "checkout_ready_topup",
    "Order {order_no}: {plan}, {price}.\n"
    "Tap the button to pay; the balance is in your wallet right after the payment.",
)
plural(
    "qr_caption_topup",
    "minutes",
    "Order {order_no}: {plan}, {price}.\n"
    "Scan this QR code with {app} to pay. It works for {minutes} more minute; the balance is "
    "in your wallet right after the payment.",
    "Order {order_no}: {plan}, {price}.\n"
    "Scan this QR code with {app} to pay. It works for {minutes} more minutes; the balance is "
    "in your wallet right after the payment.",
)
msg(
    "qr_link_only_topup",
    "Order {order_no}: {plan}, {price}.\n"
    "Open the pay page and scan its QR code with {app}; the balance is in your wallet right "
    "after the payment.",
)
plural(
    "wechat_qr_text_topup",
    "minutes",
    "Order {order_no}: {plan}, {price}.\n"
    "Scan the QR code above with {app} to pay; it works for {minutes} more minute. Or open the "
    "pay page: {link}\nThe balance is in your wallet right after the payment.",
    "Order {order_no}: {plan}, {price}.\n"
    "Scan the QR code above with {app} to pay; it works for {minutes} more minutes. Or open the "
    "pay page: {link}\nThe balance is in your wallet right after the payment.",
)
msg(
    "wechat_qr_link_only_topup",
    "Order {order_no}: {plan}, {price}.\nOpen the pay page and scan its QR code with {app}: "
    "{link}\nThe balance is in your wallet right after the payment.",
)
msg("wechat_wallet_topups", "Top-ups on sale (reply with a number to buy one):")
msg("wechat_topup_gone", "That top-up is not on sale any more. Send 钱包 (wallet) to see what is.")
msg(
    "wechat_topup_checkout_link",
    "Order {order_no}: {topup}.\nPay here: {link}\n"
    "The balance is in your wallet right after the payment.",
)
msg("wallet_recurring", "A subscription is paid by card each period, not from the wallet.")
msg(
    "wallet_paid_no_points",
    "Order {order_no}: {plan} paid from your wallet ({amount}). Your invite follows.",
)

# -- the Telegram command menu (bot/telegram.py): one line per command, in the user's language --
msg("cmd_start", "Browse groups and buy access")
msg("cmd_my", "Your access and end dates")
msg("cmd_orders", "Your orders")
msg("cmd_wallet", "Your balance, points and top-ups")
msg("cmd_pin", "Set or remove your wallet PIN")
msg("cmd_cancel", "Stop a subscription renewing")
msg("cmd_link", "Link your WeChat account")
msg("cmd_language", "English / 中文")
msg("cmd_help", "What I can do")
# -- a wallet choice made twice (a double tap, an old button pressed again): paid once --
msg(
    "wallet_choice_used",
    "You chose this already: order {order_no}. To buy this plan again, open it anew with /start.",
)
# -- a PIN sent long after it was asked for (bot/handlers/wallet_pay.py PIN_WAIT) --
msg(
    "pin_wait_expired",
    "That PIN request has expired, so nothing was paid; I deleted your message. To pay from "
    "the wallet, pick the plan again with /start.",
)
