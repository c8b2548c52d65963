import re

import pytest

from gatepass.cli import main
from sandbox.wechaty.service import node_missing


def in_order(text: str, lines: list[str]) -> None:
    """Each of `lines` is in `text`, each after the one before."""
    at = 0
    for line in lines:
        found = text.find(line, at)
        assert found >= 0, (line, text[at:])
        at = found + len(line)


def test_demo_plays_the_whole_story_and_exits_0(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Bob is now a member of Traders Club" in out
    assert "Sam's request was declined" in out
    assert "demo OK" in out

    # The Telegram Stars chapter comes after the sandbox purchase and the stranger.
    stars = out.index("== Telegram Stars: a second buyer pays in the chat, the owner refunds ==")
    assert stars > out.index("Sam's request was declined")
    chapter = out[stars:]
    assert "Olga (owner) in private chat: /addplan 1 30d 250XTR Stars monthly" in chapter
    assert "bot → Olga: Plan #2 added: Stars monthly, 30d, 250 XTR" in chapter
    assert "Dana (buyer) presses [Telegram Stars · 250 XTR]" in chapter
    invoice = re.search(
        r"bot → Dana: \[invoice\] Stars monthly: Stars monthly · (GP\w+), 250 ⭐", chapter
    )
    assert invoice is not None, chapter
    order_no = invoice.group(1)
    assert "Dana (buyer) presses [Pay 250 ⭐] on the invoice and confirms" in chapter
    assert "Telegram: the bot approved the pre-checkout; Dana paid 250 ⭐" in chapter
    assert "Dana taps the invite: requested to join" in chapter
    assert "Dana is now a member of Traders Club" in chapter
    assert f"Olga (owner) in private chat: /refund {order_no}" in chapter
    assert f"bot → Olga: Refund: 250 XTR of order {order_no} (Stars monthly, bought by @dana)" in (
        chapter
    )
    assert (
        f"bot → Dana: Your payment of 250 XTR for Stars monthly (order {order_no}) was refunded, "
        "so your access to Traders Club has ended and you were removed." in chapter
    )
    assert "Telegram: 250 ⭐ went back to Dana; Dana was removed from Traders Club" in chapter
    # Told in this order: paid, in, refund asked, refund done, buyer told, buyer out.
    steps = [
        "Dana paid 250 ⭐",
        "Dana is now a member",
        f"/refund {order_no}",
        "bot → Olga: Refund:",
        "bot → Dana: Your payment",
        "Dana was removed",
    ]
    assert [chapter.index(s) for s in steps] == sorted(chapter.index(s) for s in steps)
    assert "a second buyer paid with Telegram Stars and the owner refunded it" in out

    # The WeChat Pay chapter: a Chinese-speaking buyer pays the CNY price by QR code.
    wechat = out.index("== WeChat Pay: a buyer scans the QR code and pays 9.90 CNY ==")
    assert wechat > stars
    chapter = out[wechat:]
    assert "Wei (buyer) presses [微信支付 · 9.90 CNY]" in chapter
    qr = re.search(r"bot → Wei: \[photo: QR code, \d+ bytes PNG\] 订单 (GP\w+)：", chapter)
    assert qr is not None, chapter
    order_no = qr.group(1)
    assert f"[我已付款] (paidchk:{order_no})" in chapter
    assert re.search(rf"\[打开付款页面\] \(http://127\.0\.0\.1:\d+/pay/{order_no}\)", chapter)
    assert "Wei scans the QR code with WeChat" in chapter
    assert "[加入 Traders Club] (https://t.me/+" in chapter
    assert "Wei is now a member of Traders Club" in chapter
    assert "a third paid 9.90 CNY with WeChat Pay by QR code" in out

    # The wallet chapter: a top-up through the sandbox checkout, then a plan from the balance.
    wallet = out.index("== Wallet: a buyer tops up, then pays for a plan from the balance ==")
    assert wallet > out.index("Wei is now a member of Traders Club")
    chapter = out[wallet:]
    lines = [
        "Olga (owner) in private chat: /addtopup 10USD 1USD",
        "bot → Olga: Top-up #1 added: Top-up 10.00 USD (+1.00 USD bonus).",
        "Tia (buyer) in private chat: /wallet",
        "bot → Tia: Your wallet",
        "[Top-up 10.00 USD (+1.00 USD bonus)] (tpu:1)",
        "Tia (buyer) presses [Top-up 10.00 USD (+1.00 USD bonus)]",
        "[Sandbox test payment · 10.00 USD] (tpp:1:sandbox)",
        "Tia (buyer) presses [Sandbox test payment · 10.00 USD]",
        "checkout page: Paid.",
        "bot → Tia: Your top-up is paid: 10.00 USD plus a 1.00 USD bonus is in your wallet.",
        # (the button also carries when it was shown, so a second tap pays nothing)
        "[Wallet · 4.99 USD balance] (wpay:1:",
        ":wallet:USD)",
        "Tia (buyer) presses [Wallet · 4.99 USD balance]",
        "Monthly access paid from your wallet (4.99 USD).",
        "Tia taps the invite: requested to join",
        "Tia is now a member of Traders Club",
        "Tia (buyer) in private chat: /wallet",
        "Balance: 6.01 USD",
        "+1.00 USD  top-up bonus",  # the entries, newest first
        "+10.00 USD  top-up",
    ]
    in_order(chapter, lines)
    assert re.search(
        r"Tia opens http://127\.0\.0\.1:\d+/sandbox/pay/GP\w+ and presses Pay", chapter
    )
    assert "a fourth topped up her wallet and bought the plan from the balance" in out

    # The WeChat chapter: the same service sells a WeChat room through the WeChat bot.
    start = out.index(
        "== WeChat: a room owner sells her room, a buyer pays by WeChat Pay and is added =="
    )
    assert start > wallet
    chapter = out[start:]
    why = node_missing()
    if why is not None:
        # Without Node the chapter is one line saying why (and how to get it).
        assert f"(WeChat chapter skipped: {why})" in chapter
        assert "(the WeChat chapter was skipped)." in out
        pytest.skip(f"the demo's WeChat chapter needs Node: {why}")
    lines = [
        "Mei (room owner) in WeChat Traders Club WeChat: /setup",
        "WeChat bot → Traders Club WeChat: Traders Club WeChat is registered as room #2.",
        "Mei (room owner) in WeChat private chat: /addplan 2 30d 9.90CNY Monthly",
        "WeChat bot → Mei: Plan #3 added: Monthly, 30d, 9.90 CNY, for #2 Traders Club WeChat.",
        "Li (buyer) in WeChat private chat: 菜单",
        "WeChat bot → Li: 在售的群，请回复编号：",
        "1. Traders Club WeChat",
        "1. Monthly · 30 天 · 9.90 CNY",
        "1. 微信支付 · 9.90 CNY",
        "WeChat bot → Li: [image: QR code,",
        "Li scans the QR image with WeChat",
        "WeChat Pay: paid; its signed, encrypted notification goes to /webhooks/wechatpay",
        "WeChat bot → Li: 已收到付款，谢谢！我已把你拉进 Traders Club WeChat。",  # noqa: RUF001
        "WeChat: the bot added Li to 'Traders Club WeChat'; Li is now a member",
    ]
    in_order(chapter, lines)
    qr = re.search(r"WeChat bot → Li: 订单 (GP\w+)：Monthly，9\.90 CNY。", chapter)
    assert qr is not None, chapter
    assert re.search(rf"http://127\.0\.0\.1:\d+/pay/{qr.group(1)}", chapter)
    assert "on WeChat, a room owner sold her room and a buyer paid and was added." in out
