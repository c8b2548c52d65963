import re

from gatepass.cli import main


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
