"""The message catalog: every user-facing text, in English and Simplified Chinese.

The user's Telegram language picks the catalog (zh* -> Chinese, else English) until they
choose with /language. Parameters named `until` take an ISO datetime or None (lifetime).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

LANGUAGES = ("en", "zh")

TEXTS: dict[str, dict[str, str]] = {
    # --- buyer -------------------------------------------------------------------------
    "welcome": {
        "en": "Hi {name}! Pick a group to join:",
        "zh": "你好，{name}！请选择要加入的群组：",
    },
    "no_groups": {
        "en": "No groups are on sale yet. Please check back later.",
        "zh": "目前还没有在售的群组，请稍后再来。",
    },
    "group_gone": {
        "en": "That group is not on sale any more. Send /start to see what is.",
        "zh": "该群组已不再出售。发送 /start 查看在售群组。",
    },
    "pick_plan": {
        "en": "{group}: pick a plan",
        "zh": "{group}：请选择套餐",
    },
    "no_plans": {
        "en": "{group} has no plans on sale right now.",
        "zh": "{group} 目前没有在售的套餐。",
    },
    "plan_gone": {
        "en": "That plan is not on sale any more. Send /start to see what is.",
        "zh": "该套餐已下架。发送 /start 查看在售套餐。",
    },
    "pick_method": {
        "en": "{plan} ({duration}): how would you like to pay?",
        "zh": "{plan}（{duration}）：请选择支付方式",
    },
    "no_methods": {
        "en": "This plan cannot be paid with any method available right now.",
        "zh": "该套餐目前没有可用的支付方式。",
    },
    "method_stripe": {"en": "Card (Stripe) · {price}", "zh": "银行卡（Stripe）· {price}"},
    "method_sandbox": {"en": "Sandbox test payment · {price}", "zh": "沙盒测试支付 · {price}"},
    "checkout_ready": {
        "en": "Order {order_no}: {plan}, {price}.\nTap the button to pay; your invite comes here "
              "right after the payment.",
        "zh": "订单 {order_no}：{plan}，{price}。\n点击按钮付款，付款后邀请链接会立即发到这里。",
    },
    "btn_pay": {"en": "Pay {price}", "zh": "支付 {price}"},
    "checkout_failed": {
        "en": "The payment provider is not answering right now. Please try again in a minute.",
        "zh": "支付服务暂时无法响应，请稍后再试。",
    },
    "invite_request": {
        "en": "Payment received, thank you! Tap the button to ask to join {group}: I approve "
              "you at once. Your access runs until {until}.",
        "zh": "已收到付款，谢谢！点击按钮申请加入 {group}，我会立即批准。有效期至 {until}。",
    },
    "invite_request_given": {
        "en": "You have been given access to {group}! Tap the button to ask to join: I approve "
              "you at once. Your access runs until {until}.",
        "zh": "你已获得 {group} 的访问权限！点击按钮申请加入，我会立即批准。有效期至 {until}。",
    },
    "invite_single_given": {
        "en": "You have been given access to {group}! Here is your personal invite; it works "
              "once. Your access runs until {until}.",
        "zh": "你已获得 {group} 的访问权限！这是你的专属邀请链接，只能使用一次。有效期至 {until}。",
    },
    "invite_single": {
        "en": "Payment received, thank you! Here is your personal invite to {group}; it works "
              "once. Your access runs until {until}.",
        "zh": "已收到付款，谢谢！这是你加入 {group} 的专属邀请链接，只能使用一次。有效期至 {until}。",
    },
    "btn_join": {"en": "Join {group}", "zh": "加入 {group}"},
    "access_extended": {
        "en": "Payment received: your access to {group} now runs until {until}.",
        "zh": "已收到付款：你在 {group} 的访问权限已延长至 {until}。",
    },
    "payment_mismatch": {
        "en": "We received a payment for order {order_no} that does not match its price, so no "
              "access was granted. The group owner has been told and will sort it out.",
        "zh": "订单 {order_no} 收到的付款金额与价格不符，因此未开通权限。已通知群主处理。",
    },
    "join_declined": {
        "en": "Your request to join {group} was declined: it needs an active membership. "
              "Buy access here: {buy_link}",
        "zh": "你加入 {group} 的申请被拒绝：需要有效的会员资格。在这里购买：{buy_link}",
    },
    "removed_no_access": {
        "en": "You were removed from {group} because you have no active membership. "
              "Buy access here: {buy_link}",
        "zh": "你已被移出 {group}，因为你没有有效的会员资格。在这里购买：{buy_link}",
    },
    "renew_reminder": {
        "en": "Your access to {group} ends on {until}. Renew now to keep your place: {buy_link}",
        "zh": "你在 {group} 的访问权限将于 {until} 到期。立即续费以保留你的位置：{buy_link}",
    },
    "btn_renew": {"en": "Renew {group}", "zh": "续费 {group}"},
    "access_ended": {
        "en": "Your access to {group} has ended, so you were removed from it. You are welcome "
              "back any time: buy access again here and you get a new invite at once: {buy_link}",
        "zh": "你在 {group} 的访问权限已到期，因此已被移出该群组。欢迎随时回来：在这里重新购买，"
              "即可立即收到新的邀请：{buy_link}",
    },
    "help": {
        "en": "I sell access to private groups.\n"
              "/start — browse groups and buy access\n"
              "/my — your access, end dates, renew\n"
              "/orders — your orders\n"
              "/cancel — stop a subscription renewing\n"
              "/language — choose English or 中文\n"
              "/help — this message\n\n"
              "Group owners: add me to your group as an admin (invite users + ban users), "
              "send /setup there, then here: /addplan, /addsub, /plans, /members, /grant, "
              "/revoke, /stats, /export, /whitelist, /refundpolicy.",
        "zh": "我出售私密群组的访问权限。\n"
              "/start — 浏览群组并购买\n"
              "/my — 我的权限、到期时间、续费\n"
              "/orders — 我的订单\n"
              "/cancel — 取消自动续费\n"
              "/language — 选择 English 或 中文\n"
              "/help — 查看帮助\n\n"
              "群主：把我加为群管理员（邀请用户、封禁用户权限），在群里发送 /setup，"
              "然后在这里使用 /addplan、/addsub、/plans、/members、/grant、/revoke、/stats、/export、"
              "/whitelist、/refundpolicy。",
    },
    "unknown": {
        "en": "I did not understand that. Send /start to browse groups or /help to see what I "
              "can do.",
        "zh": "我没有理解。发送 /start 浏览群组，或发送 /help 查看帮助。",
    },
    "language_pick": {"en": "Choose your language:", "zh": "请选择语言："},
    "language_set": {"en": "Language set to English.", "zh": "语言已设置为中文。"},
    "lifetime": {"en": "lifetime", "zh": "永久"},
    "private_only": {
        "en": "Please send this command to me in a private chat.",
        "zh": "请在与我的私聊中发送此命令。",
    },
    # --- owner -------------------------------------------------------------------------
    "setup_group_only": {
        "en": "Send /setup inside the group you want to sell access to (with me as an admin).",
        "zh": "请在要出售访问权限的群组里发送 /setup（需先把我设为管理员）。",
    },
    "setup_not_admin": {
        "en": "Only the group's creator or an administrator can set it up.",
        "zh": "只有群主或管理员可以设置该群组。",
    },
    "setup_bot_missing": {
        "en": "I cannot manage this group yet. Missing: {missing}. Make me an administrator with "
              "these rights, then send /setup again.",
        "zh": "我还无法管理这个群组。缺少：{missing}。请把我设为具有这些权限的管理员，然后再次发送 /setup。",
    },
    "setup_other_owner": {
        "en": "This group is already registered by another owner.",
        "zh": "该群组已被其他群主登记。",
    },
    "setup_ok": {
        "en": "{group} is registered as group #{group_id} (invites: {mode}). In a private chat "
              "with me, add a plan, for example:\n/addplan {group_id} 30d 4.99USD Monthly access",
        "zh": "{group} 已登记为群组 #{group_id}（邀请方式：{mode}）。请在与我的私聊中添加套餐，例如：\n"
              "/addplan {group_id} 30d 4.99USD 月度会员",
    },
    "setup_refreshed": {
        "en": "{group} (group #{group_id}, invites: {mode}) is set up and I have the rights I "
              "need.",
        "zh": "{group}（群组 #{group_id}，邀请方式：{mode}）已设置完毕，我拥有所需的权限。",
    },
    "setup_bad_mode": {
        "en": "'{mode}' is not an invite mode. Usage: /setup [join_request|single_use]",
        "zh": "“{mode}” 不是有效的邀请方式。用法：/setup [join_request|single_use]",
    },
    "right_admin": {"en": "administrator status", "zh": "管理员身份"},
    "right_can_invite_users": {"en": "the right to invite users via link",
                               "zh": "通过链接邀请用户的权限"},
    "right_can_restrict_members": {"en": "the right to ban users", "zh": "封禁用户的权限"},
    "usage_addplan": {
        "en": "Usage: /addplan <group> <duration> <price>... [title]\n"
              "e.g. /addplan 1 30d 4.99USD 250XTR Monthly access  (duration: 30d, 12m, 1y, "
              "lifetime; a bundle: 1,2)",
        "zh": "用法：/addplan <群组> <时长> <价格>... [标题]\n"
              "例如：/addplan 1 30d 4.99USD 250XTR 月度会员（时长：30d、12m、1y、lifetime；多个群组：1,2）",
    },
    "usage_addsub": {
        "en": "Usage: /addsub <group> <period> <price>... [title]\n"
              "e.g. /addsub 1 1m 4.99USD Monthly subscription  (period: 1m, 1y, or 30d for Stars)",
        "zh": "用法：/addsub <群组> <周期> <价格>... [标题]\n"
              "例如：/addsub 1 1m 4.99USD 月度订阅（周期：1m、1y，Stars 用 30d）",
    },
    "bad_args": {"en": "{reason}", "zh": "{reason}"},
    "missing_args": {"en": "Some arguments are missing.", "zh": "缺少参数。"},
    "needs_price": {"en": "At least one price is needed, like 4.99USD.",
                    "zh": "至少需要一个价格，例如 4.99USD。"},
    "group_ref_invalid": {"en": "'{ref}' is not a group number; /plans lists yours.",
                          "zh": "“{ref}” 不是群组编号；/plans 会列出你的群组。"},
    "group_not_found": {"en": "There is no group {ref}; /plans lists yours.",
                        "zh": "没有群组 {ref}；/plans 会列出你的群组。"},
    "group_not_yours": {"en": "Group {ref} is not yours to manage.",
                        "zh": "群组 {ref} 不归你管理。"},
    "plan_needs_group": {"en": "A plan needs at least one group.", "zh": "套餐至少需要一个群组。"},
    "plan_duplicate_currency": {"en": "Give each currency only one price.",
                                "zh": "每种货币只能设置一个价格。"},
    "sub_needs_period": {"en": "A subscription needs a renewal period.",
                         "zh": "订阅需要设置续费周期。"},
    "plan_added": {
        "en": "Plan #{plan_id} added: {title}, {duration}{recurring}, {prices}, for {groups}.\n"
              "Buyers find it with /start or this link: {buy_link}",
        "zh": "已添加套餐 #{plan_id}：{title}，{duration}{recurring}，{prices}，适用于 {groups}。\n"
              "买家可以通过 /start 或此链接购买：{buy_link}",
    },
    "recurring_suffix": {"en": ", renews automatically", "zh": "，自动续费"},
    "plans_none": {
        "en": "You have no groups yet. Add me to your group as an admin and send /setup there.",
        "zh": "你还没有群组。把我加为群管理员并在群里发送 /setup。",
    },
    "plans_group": {"en": "Group #{group_id} {group} ({mode})", "zh": "群组 #{group_id} {group}（{mode}）"},
    "plans_plan": {"en": "  plan #{plan_id}: {title}, {duration}{recurring}, {prices}",
                   "zh": "  套餐 #{plan_id}：{title}，{duration}{recurring}，{prices}"},
    "plans_group_empty": {"en": "  no plans yet: /addplan {group_id} 30d 4.99USD",
                          "zh": "  还没有套餐：/addplan {group_id} 30d 4.99USD"},
    "refund_policy_revoke": {
        "en": "On a refund or dispute, access ends at once (policy: revoke). "
              "/refundpolicy keep lets it run to its end date instead.",
        "zh": "发生退款或争议时，访问权限立即终止（策略：revoke）。"
              "使用 /refundpolicy keep 可改为保留到到期日。",
    },
    "refund_policy_keep": {
        "en": "On a refund or dispute, access runs to its end date and does not renew "
              "(policy: keep). /refundpolicy revoke ends it at once instead.",
        "zh": "发生退款或争议时，访问权限保留到到期日且不再续费（策略：keep）。"
              "使用 /refundpolicy revoke 可改为立即终止。",
    },
    "refund_policy_bad": {"en": "'{policy}' is not a refund policy.",
                          "zh": "“{policy}” 不是有效的退款策略。"},
    "usage_refund_policy": {"en": "Usage: /refundpolicy [revoke|keep]",
                            "zh": "用法：/refundpolicy [revoke|keep]"},
    "usage_whitelist": {
        "en": "Usage: /whitelist <user> <group> (and /unwhitelist <user> <group>); <user> is "
              "@username or a numeric Telegram id",
        "zh": "用法：/whitelist <用户> <群组>（以及 /unwhitelist <用户> <群组>）；<用户> 为 "
              "@用户名 或 Telegram 数字 ID",
    },
    "whitelist_added": {
        "en": "{user} may now stay in {group} without a paid membership.",
        "zh": "{user} 现在无需付费会员也可以留在 {group}。",
    },
    "whitelist_removed": {
        "en": "{user} is off the whitelist of {group}; without paid access they will be removed "
              "the next time they join.",
        "zh": "{user} 已从 {group} 的白名单移除；没有付费权限时，下次加入将被移出。",
    },
    "whitelist_same": {"en": "Nothing to change for {user} in {group}.",
                       "zh": "{user} 在 {group} 中没有需要更改的内容。"},
    "owner_payment_mismatch": {
        "en": "Order {order_no} was paid {got}, but the order is {want}. No access was granted; "
              "refund it with the button below (or grant by hand).",
        "zh": "订单 {order_no} 实付 {got}，但订单金额为 {want}。未开通权限，请点下方按钮退款（或手动授权）。",
    },
    # --- buyer's tools: /my, /orders, /cancel ----------------------------------------------
    "my_none": {
        "en": "You have no access yet. Send /start to browse groups.",
        "zh": "你还没有任何访问权限。发送 /start 浏览群组。",
    },
    "my_header": {"en": "Your access:", "zh": "你的访问权限："},
    "my_active": {"en": "• {group}: until {until}", "zh": "• {group}：有效期至 {until}"},
    "my_active_renews": {"en": "• {group}: renews automatically on {until}",
                         "zh": "• {group}：将于 {until} 自动续费"},
    "my_lifetime": {"en": "• {group}: lifetime access", "zh": "• {group}：永久访问"},
    "my_pending": {"en": "• {group}: waiting for approval", "zh": "• {group}：等待批准"},
    "my_lapsing": {"en": "• {group}: ended on {until}; renew now to keep your place",
                   "zh": "• {group}：已于 {until} 到期；立即续费以保留你的位置"},
    "my_expired": {"en": "• {group}: ended on {date}", "zh": "• {group}：已于 {date} 到期"},
    "my_revoked": {"en": "• {group}: revoked on {date}", "zh": "• {group}：已于 {date} 被撤销"},
    "btn_stop_renew": {"en": "Stop auto-renew: {group}", "zh": "取消自动续费：{group}"},
    "btn_invite": {"en": "Invite to {group}", "zh": "{group} 的邀请链接"},
    "my_not_active": {
        "en": "Your access to {group} is not active, so there is nothing to join. Send /start "
              "to buy it again.",
        "zh": "你在 {group} 的访问权限已失效，无法加入。发送 /start 重新购买。",
    },
    "invite_single_replaced": {
        "en": "Someone else used your invite to {group}, so I revoked it. Here is a new one, "
              "for you only; it works once. Your access runs until {until}.",
        "zh": "有人使用了你加入 {group} 的邀请链接，我已将其作废。这是你的新专属链接，只能使用一次。"
              "有效期至 {until}。",
    },
    "invite_again": {
        "en": "Here is your invite to {group} again. Your access runs until {until}.",
        "zh": "这是你加入 {group} 的邀请链接。有效期至 {until}。",
    },
    "invite_coming": {"en": "Your invite to {group} is on its way.",
                      "zh": "你加入 {group} 的邀请链接马上发到。"},
    "orders_none": {
        "en": "You have no orders yet. Send /start to browse groups.",
        "zh": "你还没有订单。发送 /start 浏览群组。",
    },
    "orders_header": {"en": "Your orders, newest first:", "zh": "你的订单（最新的在前）："},
    "orders_header_capped": {"en": "Your latest {shown} of {total} orders:",
                             "zh": "你最近的 {shown} 个订单（共 {total} 个）："},
    "orders_line": {"en": "{order_no} · {date} · {plan} · {price} · {provider} · {status}",
                    "zh": "{order_no} · {date} · {plan} · {price} · {provider} · {status}"},
    "order_status_pending": {"en": "awaiting payment", "zh": "待支付"},
    "order_status_paid": {"en": "paid", "zh": "已支付"},
    "order_status_expired": {"en": "expired", "zh": "已过期"},
    "order_status_cancelled": {"en": "cancelled", "zh": "已取消"},
    "order_status_failed": {"en": "failed", "zh": "失败"},
    "order_status_refunded": {"en": "refunded", "zh": "已退款"},
    "cancel_none": {
        "en": "None of your access renews automatically, so there is nothing to cancel. /my "
              "shows your access.",
        "zh": "你没有自动续费的访问权限，无需取消。发送 /my 查看你的访问权限。",
    },
    "cancel_pick": {
        "en": "Which automatic renewal should I stop? You keep access until the end of the "
              "period you paid for.",
        "zh": "要取消哪个自动续费？已付费的周期结束前你仍可访问。",
    },
    "cancel_done": {
        "en": "Auto-renew is off for {group}: you will not be charged again. Your access runs "
              "until {until}.",
        "zh": "已取消 {group} 的自动续费，之后不会再扣费。你的访问权限有效期至 {until}。",
    },
    # Raised by billing.subscriptions.cancel_auto_renew.
    "cancel_not_found": {"en": "That access is not yours or no longer exists. /my shows yours.",
                         "zh": "该访问权限不属于你或已不存在。发送 /my 查看你的访问权限。"},
    "cancel_nothing": {"en": "{group} does not renew automatically, so there is nothing to stop.",
                       "zh": "{group} 没有自动续费，无需取消。"},
    "cancel_unsupported": {
        "en": "The renewal of {group} cannot be stopped from here; please ask the group owner.",
        "zh": "无法在这里取消 {group} 的自动续费，请联系群主。",
    },
    "cancel_failed": {
        "en": "The payment provider did not answer, so {group} still renews. Please try again "
              "in a minute.",
        "zh": "支付服务没有响应，{group} 仍会自动续费。请稍后再试。",
    },
    # --- owner's tools: /members, /grant, /revoke, /stats, /export ---------------------------
    "usage_members": {"en": "Usage: /members <group>  e.g. /members 1",
                      "zh": "用法：/members <群组>，例如 /members 1"},
    "usage_export": {"en": "Usage: /export <group>  e.g. /export 1",
                     "zh": "用法：/export <群组>，例如 /export 1"},
    "usage_grant": {
        "en": "Usage: /grant <user> <group> <duration>\n"
              "e.g. /grant @bob 1 30d  (user: @username or numeric Telegram id; duration: 30d, "
              "12m, 1y, lifetime)",
        "zh": "用法：/grant <用户> <群组> <时长>\n"
              "例如 /grant @bob 1 30d（用户：@用户名或 Telegram 数字 ID；时长：30d、12m、1y、lifetime）",
    },
    "usage_revoke": {"en": "Usage: /revoke <user> <group>  e.g. /revoke @bob 1",
                     "zh": "用法：/revoke <用户> <群组>，例如 /revoke @bob 1"},
    "too_many_args": {"en": "Too many arguments: '{extra}'.", "zh": "参数过多：“{extra}”。"},
    "user_ref_invalid": {
        "en": "'{ref}' is not a user: give @username or their numeric Telegram id.",
        "zh": "“{ref}” 不是有效的用户：请使用 @用户名或 Telegram 数字 ID。",
    },
    "user_unknown": {
        "en": "I do not know {ref}: ask them to send /start to me, or use their numeric "
              "Telegram id.",
        "zh": "我不认识 {ref}：请让对方先给我发送 /start，或使用对方的 Telegram 数字 ID。",
    },
    "grant_done": {
        "en": "{user} has access to {group} until {until}. They are told, with an invite if "
              "they need one.",
        "zh": "{user} 已获得 {group} 的访问权限，有效期至 {until}。已通知对方，如需要会附上邀请链接。",
    },
    "grant_done_lifetime": {
        "en": "{user} has lifetime access to {group}. They are told, with an invite if they "
              "need one.",
        "zh": "{user} 已获得 {group} 的永久访问权限。已通知对方，如需要会附上邀请链接。",
    },
    "grant_new_user": {
        "en": "I have never talked to {user}: ask them to send /start to @{bot}; /my then gives "
              "them their invite.",
        "zh": "我还没有和 {user} 对话过：请让对方给 @{bot} 发送 /start，然后通过 /my 获取邀请链接。",
    },
    "granted_by_owner": {
        "en": "The owner of {group} gave you access until {until}.",
        "zh": "{group} 的群主为你开通了访问权限，有效期至 {until}。",
    },
    "granted_by_owner_lifetime": {
        "en": "The owner of {group} gave you lifetime access.",
        "zh": "{group} 的群主为你开通了永久访问权限。",
    },
    "revoke_done": {
        "en": "{user} no longer has access to {group}: they are removed from the group and told.",
        "zh": "{user} 已失去 {group} 的访问权限：已将其移出群组并通知对方。",
    },
    "revoke_renewal_stopped": {"en": "Their automatic renewal is stopped as well.",
                               "zh": "对方的自动续费也已取消。"},
    "revoke_renewal_kept": {
        "en": "Careful: their subscription could not be stopped from here, so the payment "
              "provider may charge them again; cancel it there.",
        "zh": "注意：无法在这里取消对方的订阅，支付服务可能会再次扣费；请在支付服务处取消。",
    },
    "revoke_nothing": {"en": "{user} has no access to {group} to revoke.",
                       "zh": "{user} 没有可撤销的 {group} 访问权限。"},
    "revoke_owner": {"en": "{user} owns {group}; an owner's access cannot be revoked.",
                     "zh": "{user} 是 {group} 的群主，不能撤销群主的访问权限。"},
    "access_revoked_owner": {
        "en": "The owner of {group} ended your access, so you were removed from the group.",
        "zh": "{group} 的群主终止了你的访问权限，你已被移出该群组。",
    },
    "members_header": {
        "en": "{group} (#{group_id}): {active} active ({lifetime} lifetime, {renewing} renewing "
              "automatically), {ended} ended.",
        "zh": "{group}（#{group_id}）：{active} 名有效成员（{lifetime} 名永久，{renewing} 名自动续费），"
              "{ended} 名已结束。",
    },
    "members_line": {"en": "{who}: until {until}", "zh": "{who}：有效期至 {until}"},
    "members_line_renews": {"en": "{who}: renews {until}", "zh": "{who}：{until} 自动续费"},
    "members_line_lifetime": {"en": "{who}: lifetime", "zh": "{who}：永久"},
    "members_more": {"en": "… and {more} more: /export {group_id} has them all.",
                     "zh": "……还有 {more} 名：/export {group_id} 可导出全部。"},
    "stats_header": {"en": "Figures as of {date}:", "zh": "截至 {date} 的数据："},
    "stats_group": {"en": "#{group_id} {group}: {active} active members",
                    "zh": "#{group_id} {group}：{active} 名有效成员"},
    "stats_revenue": {
        "en": "Revenue, net of refunds and disputes: {total} all time; {recent} in the last "
              "30 days",
        "zh": "收入（扣除退款和争议）：累计 {total}；最近 30 天 {recent}",
    },
    "stats_no_money": {"en": "nothing", "zh": "无"},
    "stats_unexpected": {
        "en": "Unexpected charges to refund (paid twice, after a failure, wrong amount; not in "
              "revenue): {count}, {total}",
        "zh": "待退款的意外付款（重复付款、失败后付款、金额不符；不计入收入）：{count} 笔，{total}",
    },
    "stats_renewals": {"en": "Renewals in the last 30 days: {renewals}",
                       "zh": "最近 30 天续费次数：{renewals}"},
    "stats_churn": {
        "en": "Churn over 30 days: {ended} ended of {start} active 30 days ago ({rate})",
        "zh": "30 天流失：30 天前的 {start} 名有效成员中 {ended} 名已结束（{rate}）",
    },
    "stats_no_rate": {"en": "n/a", "zh": "无"},
    "export_caption": {
        "en": "{group} (#{group_id}): {members} memberships and {orders} orders, as of {date}.",
        "zh": "{group}（#{group_id}）：{members} 条会员记录和 {orders} 个订单，截至 {date}。",
    },
    # --- billing: renewals, failed payments, refunds and disputes (billing/payments.py) -------
    "renewal_payment_failed": {
        "en": "The {amount} payment to renew {plan} (order {order_no}) did not go through. Your "
              "access runs until its end date; to keep it, please fix the payment: {link}",
        "zh": "续费 {plan}（订单 {order_no}）的 {amount} 扣款未成功。你的访问权限在到期前仍然有效；"
              "如需继续，请更新付款：{link}",
    },
    "btn_fix_payment": {"en": "Fix payment", "zh": "更新付款"},
    "payment_failed": {
        "en": "The payment for order {order_no} ({plan}) failed, so no access was granted. "
              "Send /start to try again.",
        "zh": "订单 {order_no}（{plan}）付款失败，未开通权限。发送 /start 重新购买。",
    },
    "access_revoked_refund": {
        "en": "Order {order_no} was refunded, so your access to {group} has ended and you were "
              "removed from the group.",
        "zh": "订单 {order_no} 已退款，你在 {group} 的访问权限已终止，你已被移出该群组。",
    },
    "access_revoked_dispute": {
        "en": "The payment for order {order_no} is disputed with your bank, so your access to "
              "{group} has ended and you were removed from the group.",
        "zh": "订单 {order_no} 的付款已被你的银行提出争议，你在 {group} 的访问权限已终止，你已被移出该群组。",
    },
    "owner_refund": {
        "en": "Refund: {amount} of order {order_no} ({plan}, bought by {buyer}).",
        "zh": "退款：订单 {order_no}（{plan}，买家 {buyer}）退款 {amount}。",
    },
    "owner_extra_twice": {
        "en": "Paid twice: {buyer} paid {amount} again for order {order_no} ({plan}), which was "
              "already paid. It is not counted as revenue or as a renewal; refund it with the "
              "button below.",
        "zh": "重复付款：买家 {buyer} 为已付款的订单 {order_no}（{plan}）再次支付了 {amount}。"
              "该款项不计入收入或续费；请点下方按钮退款。",
    },
    "owner_extra_after_failure": {
        "en": "Paid after a failed attempt: {buyer} paid {amount} for order {order_no} ({plan}), "
              "which had failed, so no access was granted. Refund it with the button below.",
        "zh": "失败后付款：买家 {buyer} 为已失败的订单 {order_no}（{plan}）支付了 {amount}，未开通权限。"
              "请点下方按钮退款。",
    },
    "btn_refund_extra": {"en": "Refund {amount}", "zh": "退款 {amount}"},
    "owner_extra_refund": {
        "en": "Refunded: the extra {amount} {buyer} paid for order {order_no} ({plan}) went "
              "back. Their access is unchanged.",
        "zh": "已退款：买家 {buyer} 为订单 {order_no}（{plan}）多付的 {amount} 已退回，其访问权限不变。",
    },
    "owner_extra_dispute": {
        "en": "Dispute: {buyer}'s bank took back the extra {amount} paid for order {order_no} "
              "({plan}). Their access is unchanged.",
        "zh": "争议：买家 {buyer} 的银行追回了订单 {order_no}（{plan}）多付的 {amount}，其访问权限不变。",
    },
    "refund_requested": {
        "en": "Refund of {amount} (order {order_no}) requested; you will be told when it is done.",
        "zh": "已申请退款 {amount}（订单 {order_no}）；完成后会通知你。",
    },
    "refund_already_requested": {
        "en": "A refund of this payment was requested already.",
        "zh": "该款项已申请过退款。",
    },
    "refund_already_done": {"en": "This payment ({amount}) has been refunded already.",
                            "zh": "该款项（{amount}）已退款。"},
    "refund_not_yours": {"en": "Only the owner of that plan can refund this payment.",
                         "zh": "只有该套餐的所有者可以退款此款项。"},
    "refund_not_extra": {
        "en": "That payment is not an unexpected one; use /refund for an order.",
        "zh": "该款项不是意外付款；订单退款请使用 /refund。",
    },
    "refund_by_hand": {
        "en": "{provider} payments cannot be refunded from the bot; refund {amount} (order "
              "{order_no}) in the provider's dashboard.",
        "zh": "{provider} 的款项无法在机器人中退款；请在支付平台后台退款 {amount}（订单 {order_no}）。",
    },
    "owner_refund_failed": {
        "en": "The refund of {amount} (order {order_no}) was refused: {reason}",
        "zh": "退款 {amount}（订单 {order_no}）被拒绝：{reason}",
    },
    "owner_dispute_won": {
        "en": "Dispute won: {amount} of order {order_no} ({plan}, {buyer}) is yours again.",
        "zh": "争议胜诉：订单 {order_no}（{plan}，买家 {buyer}）的 {amount} 已归还给你。",
    },
    "owner_dispute_won_restored": {
        "en": "Dispute won: {amount} of order {order_no} ({plan}, {buyer}) is yours again, and "
              "their access is back.",
        "zh": "争议胜诉：订单 {order_no}（{plan}，买家 {buyer}）的 {amount} 已归还给你，其访问权限已恢复。",
    },
    "owner_dispute_lost": {
        "en": "Dispute lost: {buyer}'s bank kept {amount} of order {order_no} ({plan}). Access "
              "stays ended.",
        "zh": "争议败诉：买家 {buyer} 的银行保留了订单 {order_no}（{plan}）的 {amount}，访问权限保持终止。",
    },
    "owner_dispute": {
        "en": "Dispute: {buyer}'s bank disputes {amount} of order {order_no} ({plan}). Answer it "
              "in your Stripe dashboard before its deadline.",
        "zh": "争议：买家 {buyer} 的银行对订单 {order_no}（{plan}）的 {amount} 提出争议。请在截止日期前到 "
              "Stripe 后台处理。",
    },
}


def pick_language(stored: str | None, telegram_code: str | None = None) -> str:
    code = (stored or telegram_code or "en").lower()
    return "zh" if code.startswith("zh") else "en"


def _fmt(value: Any, lang: str) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return value


def t(key: str, lang: str | None, /, **params: Any) -> str:
    lang = pick_language(lang)
    entry = TEXTS[key]
    if "until" in params:
        until = params["until"]
        if until is None:
            params["until"] = entry_text("lifetime", lang)
        elif isinstance(until, str):
            params["until"] = datetime.fromisoformat(until)
    return entry.get(lang, entry["en"]).format(**{k: _fmt(v, lang) for k, v in params.items()})


def entry_text(key: str, lang: str) -> str:
    return TEXTS[key].get(lang, TEXTS[key]["en"])
