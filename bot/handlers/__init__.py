"""One Router per concern; the order here is the order updates are tried."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import (
    admin,
    broadcast,
    catalog,
    channels,
    checkout,
    common,
    joins,
    link,
    my_access,
    owner,
    pin,
    refunds,
    stars,
    wallet,
    wallet_pay,
)


def get_routers() -> list[Router]:
    # Fresh routers each call: a router can belong to one Dispatcher only.
    # common last: it holds the fallback for anything the others do not understand.
    return [
        stars.router(),  # money first: payments are service messages no other router takes
        admin.router(),
        channels.router(),
        catalog.router(),
        checkout.router(),
        wallet_pay.router(),
        pin.router(),
        joins.router(),
        my_access.router(),
        link.router(),
        owner.router(),
        refunds.router(),
        broadcast.router(),
        wallet.router(),
        common.router(),
    ]
