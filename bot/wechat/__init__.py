"""The WeChat front-end, on python-wechaty (a puppet-service gRPC client).

Import wechaty only through `bot.wechat.compat`, which makes it work on Python 3.11.
"""
