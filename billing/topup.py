"""Top-ups (issue 11): an owner's product "pay X, receive X + bonus" in wallet balance, its
checkout through any configured provider (an order of kind "topup", no plan), the credit
when it is paid (in the webhook's transaction, exactly once) and taking it back when the
money is refunded.

Wallets are per user and service-wide: a top-up bought from any owner's product is one
balance in its currency. The money and the bonus are credited as two entries keyed by the
order ("topup:<id>", "bonus:<id>"), so a duplicate webhook, a reconcile and an "I have paid"
racing each other credit once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from billing.checkout import Bought, StartedCheckout, new_order_no, open_order_checkout
from billing.errors import PaymentError
from billing.provider import PaymentProvider
from billing.stars import CURRENCY as STARS
from billing.stars import PROVIDER as STARS_PROVIDER
from billing.wallet import BALANCE, account_for, credit, debit
from membership.catalog import is_global_admin
from membership.errors import RuleError
from storage.models import (
    ChatGroup,
    Order,
    Payment,
    TopupProduct,
    User,
    WalletAccount,
    WalletEntry,
    stored_id,
)
from storage.money import Money, MoneyError, parse_price
from storage.queries import audit, enqueue

KIND = "topup"
# The most one product may credit (pay + bonus), in minor units: a typo (`/addtopup
# 1000000CNY`) is refused rather than sold.
MAX_TOPUP_MINOR = 100_000_000


@dataclass(frozen=True)
class TopupArgs:
    pay: Money
    bonus: Money


def _price(token: str) -> Money:
    try:
        return parse_price(token)
    except MoneyError as e:
        raise RuleError(e.key, **e.params) from None


def parse_topup_args(args: str | None) -> TopupArgs:
    """`<pay> [bonus]`, e.g. `100CNY 10CNY`. RuleError (a catalog key) for anything else."""
    tokens = (args or "").split()
    if not tokens:
        raise RuleError("missing_args")
    if len(tokens) > 2:
        raise RuleError("too_many_args", extra=" ".join(tokens[2:]))
    pay = _price(tokens[0])
    bonus = _price(tokens[1]) if len(tokens) == 2 else Money(0, pay.currency)
    if pay.currency == STARS:
        raise RuleError("topup_no_stars")
    if bonus.currency != pay.currency:
        raise RuleError("topup_bonus_currency", currency=pay.currency, bonus=str(bonus))
    if pay.amount_minor <= 0:
        raise RuleError("topup_amount_zero")
    if pay.amount_minor + bonus.amount_minor > MAX_TOPUP_MINOR:
        raise RuleError("topup_too_large", most=str(Money(MAX_TOPUP_MINOR, pay.currency)))
    return TopupArgs(pay, bonus)


def topup_providers(providers: Sequence[PaymentProvider], currency: str) -> list[PaymentProvider]:
    """The providers a top-up in `currency` can be bought with: every configured one that
    takes the currency, never Telegram Stars (Stars buy digital goods inside Telegram only)."""
    return [p for p in providers if p.name != STARS_PROVIDER and p.accepts(currency)]


def topup_title(product: TopupProduct) -> str:
    """The checkout's title at the provider: "Top-up 100.00 CNY (+10.00)"."""
    pay = Money(product.amount_minor, product.currency)
    if product.bonus_minor <= 0:
        return f"Top-up {pay}"
    bonus = Money(product.bonus_minor, product.currency).format().rsplit(" ", 1)[0]
    return f"Top-up {pay} (+{bonus})"


async def _may_sell(session: AsyncSession, user: User, admin_ids: Sequence[int]) -> bool:
    """A global admin, or the owner of some group."""
    if is_global_admin(user, admin_ids):
        return True
    owned = await session.execute(
        select(col(ChatGroup.id)).where(col(ChatGroup.owner_user_id) == stored_id(user)).limit(1)
    )
    return owned.first() is not None


async def add_topup(
    session: AsyncSession,
    user: User,
    args: TopupArgs,
    now: datetime,
    *,
    admin_ids: Sequence[int],
    payable: Callable[[str], bool],
) -> TopupProduct:
    """A new active product; RuleError (nothing added) when the user sells nothing here or
    no configured provider can take the currency."""
    if not await _may_sell(session, user, admin_ids):
        raise RuleError("topup_not_owner")
    if not payable(args.pay.currency):
        raise RuleError("topup_not_payable", currency=args.pay.currency)
    product = TopupProduct(
        owner_user_id=stored_id(user),
        amount_minor=args.pay.amount_minor,
        bonus_minor=args.bonus.amount_minor,
        currency=args.pay.currency,
        active=True,
        created_at=now,
    )
    session.add(product)
    await session.flush()
    audit(session, f"user:{user.id}", "topup.add", f"topup:{product.id}", now, topup_title(product))
    return product


async def topup_products(session: AsyncSession, owner_id: int | None = None) -> list[TopupProduct]:
    """Active products (of one owner, or all), cheapest first per currency."""
    q = select(TopupProduct).where(col(TopupProduct.active).is_(True))
    if owner_id is not None:
        q = q.where(col(TopupProduct.owner_user_id) == owner_id)
    q = q.order_by(col(TopupProduct.currency), col(TopupProduct.amount_minor), col(TopupProduct.id))
    return list((await session.execute(q)).scalars().all())


async def active_topup(session: AsyncSession, topup_id: int) -> TopupProduct | None:
    product = await session.get(TopupProduct, topup_id)
    return product if product is not None and product.active else None


async def remove_topup(
    session: AsyncSession, user: User, topup_id: int, now: datetime, *, admin_ids: Sequence[int]
) -> TopupProduct:
    """Stop selling a product (orders already opened for it still settle)."""
    product = await session.get(TopupProduct, topup_id)
    if (
        product is None
        or not product.active
        or (product.owner_user_id != user.id and not is_global_admin(user, admin_ids))
    ):
        raise RuleError("topup_unknown", n=topup_id)
    product.active = False
    audit(session, f"user:{user.id}", "topup.remove", f"topup:{product.id}", now)
    return product


async def open_topup_checkout(
    session: AsyncSession,
    provider: PaymentProvider,
    user: User,
    product: TopupProduct,
    now: datetime,
    *,
    public_url: str,
    timeout: timedelta,
) -> StartedCheckout:
    """A pending order of kind "topup" for the product's price, and its checkout at the
    provider, exactly as a plan's (billing/checkout.py)."""
    if provider not in topup_providers([provider], product.currency):
        raise PaymentError(f"{provider.name} does not take top-ups in {product.currency}")
    order = Order(
        order_no=new_order_no(),
        user_id=stored_id(user),
        kind=KIND,
        plan_id=None,
        topup_id=stored_id(product),
        provider=provider.name,
        amount_minor=product.amount_minor,
        currency=product.currency,
        status="pending",
        created_at=now,
        expires_at=now + timeout,
    )
    bought = Bought(topup_title(product), metadata={"topup_id": str(product.id)})
    return await open_order_checkout(
        session, provider, user, order, bought, now, public_url=public_url
    )


@dataclass(frozen=True)
class Credited:
    amount: Money
    bonus: Money
    balance: Money  # after the credit


async def _balance(session: AsyncSession, account_id: int) -> int:
    return int(
        (
            await session.execute(
                select(col(WalletAccount.balance)).where(col(WalletAccount.id) == account_id)
            )
        ).scalar_one()
    )


async def settle_topup(
    session: AsyncSession,
    order_id: int,
    order_no: str,
    user_id: int,
    topup_id: int,
    actor: str,
    now: datetime,
) -> Credited | None:
    """The paid path of a top-up, in the caller's (the payment's) transaction, once the
    order moved to paid: credit the money and the bonus, audit, and tell the buyer. None
    when the credit was on record already (keys are per order), so nothing is repeated."""
    product = await session.get(TopupProduct, topup_id)
    buyer = await session.get(User, user_id)
    assert product is not None and buyer is not None
    account = await account_for(session, user_id, BALANCE, product.currency, now)
    new = await credit(
        session,
        account,
        product.amount_minor,
        reason="topup",
        key=f"topup:{order_id}",
        now=now,
        order_id=order_id,
    )
    if not new:
        return None
    if product.bonus_minor > 0:
        await credit(
            session,
            account,
            product.bonus_minor,
            reason="bonus",
            key=f"bonus:{order_id}",
            now=now,
            order_id=order_id,
        )
    done = Credited(
        Money(product.amount_minor, product.currency),
        Money(product.bonus_minor, product.currency),
        Money(await _balance(session, account), product.currency),
    )
    audit(
        session,
        actor,
        "order.paid",
        f"order:{order_no}",
        now,
        f"{topup_title(product)}; balance {done.balance}",
    )
    enqueue(
        session,
        "notify",
        buyer.platform,
        {
            "user_id": buyer.platform_user_id,
            "key": "wallet_topped_up",
            "params": {
                "amount": str(done.amount),
                "bonus": str(done.bonus),
                "balance": str(done.balance),
            },
            "language": buyer.language,
        },
        now,
    )
    return done


async def _account(session: AsyncSession, user_id: int, currency: str) -> WalletAccount | None:
    return (
        await session.execute(
            select(WalletAccount)
            .where(
                col(WalletAccount.user_id) == user_id,
                col(WalletAccount.kind) == BALANCE,
                col(WalletAccount.currency) == currency,
            )
            .with_for_update()
            # debit/credit move the balance with plain UPDATEs: read it fresh.
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def _still_credited(session: AsyncSession, order_id: int) -> int:
    """What a top-up order put into the balance less what reversals took back (the sum of
    its entries)."""
    return int(
        (
            await session.execute(
                select(func.coalesce(func.sum(col(WalletEntry.amount)), 0)).where(
                    col(WalletEntry.order_id) == order_id
                )
            )
        ).scalar_one()
    )


async def refund_reserved(session: AsyncSession, user_id: int, currency: str) -> int:
    """The buyer's balance in `currency` that top-ups being refunded still hold (a charge
    whose refund /refund asked for and that has not landed or failed yet): not spendable
    meanwhile, so the refund finds it there to take back."""
    asked = (
        select(col(Payment.order_id))
        .where(
            col(Payment.kind) == "charge",
            col(Payment.extra).is_(False),
            col(Payment.refund_requested_at).is_not(None),
        )
        .scalar_subquery()
    )
    orders = select(col(Order.id)).where(
        col(Order.user_id) == user_id,
        col(Order.kind) == "topup",
        col(Order.currency) == currency.upper(),
        col(Order.id).in_(asked),
    )
    total = (
        await session.execute(
            select(func.coalesce(func.sum(col(WalletEntry.amount)), 0)).where(
                col(WalletEntry.order_id).in_(orders)
            )
        )
    ).scalar_one()
    return max(int(total), 0)


async def check_refundable(session: AsyncSession, order: Order) -> None:
    """/refund of a top-up: only while the buyer's balance still holds all it credited
    (money + bonus); else RuleError "topup_spent" and nothing is refunded."""
    assert order.id is not None
    # Only what the top-up still has in the balance must be there (a partial refund took
    # part of it back already), not its whole credit.
    want = await _still_credited(session, order.id)
    account = await _account(session, order.user_id, order.currency)
    have = 0 if account is None else account.balance
    if have < want:
        raise RuleError(
            "topup_spent",
            order_no=order.order_no,
            credited=str(Money(want, order.currency)),
            balance=str(Money(have, order.currency)),
        )


async def take_back_topup(
    session: AsyncSession,
    order_id: int,
    user_id: int,
    currency: str,
    refunded_minor: int,
    full: bool,
    key: str,
    now: datetime,
) -> tuple[int, int]:
    """A refund (or dispute) of a top-up landed: take back what it credited, the bonus too
    when the whole payment went back, from the balance as far as it goes (never below
    zero). Returns (taken, short): short is what the buyer had spent already. Once per
    `key` (the reversal's own id)."""
    product_id = (
        await session.execute(select(col(Order.topup_id)).where(col(Order.id) == order_id))
    ).scalar_one()
    product = await session.get(TopupProduct, product_id)
    assert product is not None
    account = await _account(session, user_id, currency)
    # Never more than the top-up still has in the balance (its entries' sum): a refund that
    # reached us before the payment credited anything takes nothing, and reversals together
    # never take more than it credited; the rest of the balance is the buyer's own.
    want = min(
        refunded_minor + (product.bonus_minor if full else 0),
        await _still_credited(session, order_id),
    )
    have = 0 if account is None else account.balance
    take = min(want, have)
    if take > 0 and account is not None and account.id is not None:
        await debit(session, account.id, take, reason="refund", key=key, now=now, order_id=order_id)
    return take, want - take


async def give_back_topup(
    session: AsyncSession, order_id: int, taken_key: str, key: str, now: datetime
) -> int:
    """A dispute of a top-up was won: the buyer paid after all, so what its reversal took
    from the balance (the entry keyed `taken_key`; nothing when the balance was spent) is
    credited again. Once per `key`. Returns what was credited."""
    taken = (
        await session.execute(
            select(col(WalletEntry.account_id), col(WalletEntry.amount)).where(
                col(WalletEntry.idempotency_key) == taken_key
            )
        )
    ).first()
    if taken is None or int(taken[1]) >= 0:
        return 0
    amount = -int(taken[1])
    done = await credit(
        session,
        int(taken[0]),
        amount,
        reason="topup",  # the top-up's credit, back: shown as a top-up in /wallet
        key=key,
        now=now,
        order_id=order_id,
    )
    return amount if done else 0


@dataclass(frozen=True)
class StatementLine:
    at: datetime
    amount: int  # signed: minor units of `currency`, or points
    kind: str  # balance | points
    currency: str
    reason: str


async def statement(session: AsyncSession, user_id: int, limit: int = 10) -> list[StatementLine]:
    """The user's latest wallet entries, newest first, with their account's kind and
    currency (what /wallet lists under the balances)."""
    rows = await session.execute(
        select(
            col(WalletEntry.at),
            col(WalletEntry.amount),
            col(WalletAccount.kind),
            col(WalletAccount.currency),
            col(WalletEntry.reason),
        )
        .join(WalletAccount, col(WalletAccount.id) == col(WalletEntry.account_id))
        .where(col(WalletAccount.user_id) == user_id)
        .order_by(col(WalletEntry.id).desc())
        .limit(limit)
    )
    return [StatementLine(r[0], int(r[1]), r[2], r[3], r[4]) for r in rows.all()]
