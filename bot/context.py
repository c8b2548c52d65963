"""What the handlers need from the running service, put into the Dispatcher's workflow data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from billing.provider import PaymentProvider
from billing.wallet import WalletRules
from storage.clock import Clock
from storage.db import Database


@dataclass
class BotContext:
    db: Database
    clock: Clock
    providers: Mapping[str, PaymentProvider]  # in the order they are offered
    admin_ids: list[int]
    public_url: str
    order_timeout: timedelta
    bot_username: str
    wake_outbox: Callable[[], None]
    # How many /broadcast messages a second are made due (membership/broadcast.py): below
    # the process's rate budget, so other deliveries keep going out during a broadcast.
    broadcast_per_second: float = 10.0
    # The [wallet] rules; None when the wallet is off (no wallet choices at checkout).
    wallet_rules: WalletRules | None = None

    def buy_link(self, group_id: int) -> str:
        return f"https://t.me/{self.bot_username}?start=g_{group_id}"
