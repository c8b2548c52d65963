"""Pieces of the local WeChat Pay API v3 host (sandbox/wechatpay_host.py): its keys and
signatures, its merchant's orders and refunds, and its notification delivery."""
