"""Callback data of our inline buttons."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class GroupCb(CallbackData, prefix="grp"):
    group_id: int


class PlanCb(CallbackData, prefix="pln"):
    plan_id: int


class PayCb(CallbackData, prefix="pay"):
    plan_id: int
    provider: str
    currency: str


class WalletPayCb(CallbackData, prefix="wpay"):
    """Pay a plan from the wallet; `provider` pays the rest ("wallet": the wallet covers
    it all). `at`: when the choice was shown (milliseconds since the epoch, the service's
    clock), so that the same choice made twice pays once."""

    plan_id: int
    at: int
    provider: str
    currency: str


class LangCb(CallbackData, prefix="lang"):
    code: str


class PaidCheckCb(CallbackData, prefix="paidchk"):
    """ "I have paid" under a QR code: 8 + 12 bytes, well within Telegram's 64."""

    order_no: str
