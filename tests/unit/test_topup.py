"""Top-ups (billing/topup.py) against the local Stripe host: the owner's product, the
buyer's checkout (an order of kind "topup", no plan), the paid webhook crediting money and
bonus exactly once in its transaction, /refund taking it back (or refusing when it was
spent), and the views that read an order's plan."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from billing import wallet
from billing.order_view import order_view
from billing.topup import (
    TopupArgs,
    add_topup,
    open_topup_checkout,
    parse_topup_args,
    remove_topup,
    topup_products,
    topup_providers,
)
from membership.errors import RuleError
from membership.reports import user_orders
from storage.models import Order, Outbox, TopupProduct, User, WalletAccount, WalletEntry
from storage.money import Money
from storage.queries import get_or_create_user
from tests.factories import deliver_stripe_event, make_shop, stripe_events
from tests.unit.test_ledger_rules import notes, rows, run_refunds
from tests.unit.test_order_refunds import ask, refused

HOUR = timedelta(hours=1)
TEN_PLUS_ONE = TopupArgs(Money(1000, "USD"), Money(100, "USD"))


async def product(db, shop, now, stripe, args=TEN_PLUS_ONE) -> TopupProduct:
    async with db.transaction() as s:
        owner = await s.get(User, shop.owner.id)
        return await add_topup(
            s, owner, args, now, admin_ids=(), payable=lambda c: bool(topup_providers([stripe], c))
        )


async def checkout(db, stripe, shop, p, now) -> Order:
    async with db.session() as s:
        buyer = await s.get(User, shop.buyer.id)
        prod = await s.get(TopupProduct, p.id)
        started = await open_topup_checkout(
            s, stripe, buyer, prod, now, public_url="https://gatepass.example", timeout=HOUR
        )
        return started.order


async def balance(db, user) -> int:
    async with db.session() as s:
        got = (
            await s.execute(
                select(col(WalletAccount.balance)).where(
                    col(WalletAccount.user_id) == user.id, col(WalletAccount.kind) == wallet.BALANCE
                )
            )
        ).scalar_one_or_none()
        return int(got or 0)


async def paid_topup(db, fake, stripe, now):
    shop = await make_shop(db, now)
    p = await product(db, shop, now, stripe)
    order = await checkout(db, stripe, shop, p, now)
    await fake.pay(order.provider_ref)
    (paid,) = stripe_events(fake, "checkout.session.completed")
    assert await deliver_stripe_event(db, stripe, paid, now) == "granted"
    return shop, order, paid


# -- /addtopup's arguments ---------------------------------------------------------------------


def test_parse_topup_args_reads_pay_and_optional_bonus():
    assert parse_topup_args("100CNY 10CNY") == TopupArgs(Money(10000, "CNY"), Money(1000, "CNY"))
    assert parse_topup_args("4.99usd") == TopupArgs(Money(499, "USD"), Money(0, "USD"))


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (None, "missing_args"),
        ("", "missing_args"),
        ("100CNY 10CNY 1CNY", "too_many_args"),
        ("100", "price_invalid"),
        ("100ZZZ", "currency_unknown"),
        ("100CNY 10USD", "topup_bonus_currency"),
        ("250XTR", "topup_no_stars"),
        ("0CNY", "price_not_positive"),
        ("2000000CNY", "topup_too_large"),
    ],
)
def test_bad_topup_args_are_one_reason_each(args, key):
    with pytest.raises(RuleError) as e:
        parse_topup_args(args)
    assert e.value.key == key


async def test_only_an_owner_adds_and_only_in_a_payable_currency(db, stripe, now):
    shop = await make_shop(db, now)
    async with db.transaction() as s:
        buyer = await s.get(User, shop.buyer.id)
        with pytest.raises(RuleError) as e:
            await add_topup(s, buyer, TEN_PLUS_ONE, now, admin_ids=(), payable=lambda c: True)
        assert e.value.key == "topup_not_owner"
        owner = await s.get(User, shop.owner.id)
        with pytest.raises(RuleError) as e:
            await add_topup(s, owner, TEN_PLUS_ONE, now, admin_ids=(), payable=lambda c: False)
        assert e.value.key == "topup_not_payable"
    # A configured admin who owns no group may sell them too.
    async with db.transaction() as s:
        admin = await get_or_create_user(s, "telegram", "77", now)
        await add_topup(s, admin, TEN_PLUS_ONE, now, admin_ids=[77], payable=lambda c: True)
    async with db.session() as s:
        assert [(p.amount_minor, p.bonus_minor) for p in await topup_products(s)] == [(1000, 100)]


# -- paid: balance + bonus, once ---------------------------------------------------------------


async def test_paid_topup_credits_amount_and_bonus_once_and_tells_the_buyer(db, fake, stripe, now):
    shop, _order, paid = await paid_topup(db, fake, stripe, now)
    (o,) = await rows(db, Order)
    assert (o.kind, o.plan_id, o.status, o.amount_minor) == ("topup", None, "paid", 1000)
    assert await balance(db, shop.buyer) == 1100
    entries = await rows(db, WalletEntry)
    assert sorted((e.reason, e.amount, e.idempotency_key) for e in entries) == [
        ("bonus", 100, f"bonus:{o.id}"),
        ("topup", 1000, f"topup:{o.id}"),
    ]
    (note,) = [r for r in await rows(db, Outbox) if r.kind == "notify"]
    assert note.payload["key"] == "wallet_topped_up"
    assert note.payload["params"] == {
        "amount": "10.00 USD",
        "bonus": "1.00 USD",
        "balance": "11.00 USD",
    }
    # The same webhook again, and the same payment under a new event id: nothing more.
    assert await deliver_stripe_event(db, stripe, paid, now) == "duplicate"
    assert await deliver_stripe_event(db, stripe, {**paid, "id": "evt_again"}, now) == (
        "already_paid"
    )
    assert await balance(db, shop.buyer) == 1100
    assert len(await rows(db, WalletEntry)) == 2
    assert notes(await rows(db, Outbox)) == ["wallet_topped_up"]


async def test_topup_order_views_name_the_topup_not_a_plan(db, fake, stripe, now):
    shop, order, _ = await paid_topup(db, fake, stripe, now)
    async with db.session() as s:
        view = await order_view(s, order.order_no)
        assert view is not None
        assert (view.kind, view.plan, view.groups, view.price, view.bonus) == (
            "topup",
            "",
            (),
            Money(1000, "USD"),
            Money(100, "USD"),
        )
        (line,), total = await user_orders(s, shop.buyer.id)
        assert (line.kind, line.price, line.bonus, line.status, total) == (
            "topup",
            Money(1000, "USD"),
            Money(100, "USD"),
            "paid",
            1,
        )


# -- refunds -----------------------------------------------------------------------------------


async def test_refund_of_a_topup_takes_back_amount_and_bonus(db, fake, stripe, now):
    shop, order, _ = await paid_topup(db, fake, stripe, now)
    asked = await ask(db, shop.owner, order.order_no, now)
    assert asked.money == Money(1000, "USD")
    (call,) = await run_refunds(db, stripe, now)
    assert call.status == "done"
    await fake.settle()
    (refunded,) = stripe_events(fake, "charge.refunded")
    assert await deliver_stripe_event(db, stripe, refunded, now) == "recorded"
    assert await balance(db, shop.buyer) == 0
    (o,) = await rows(db, Order)
    assert o.status == "refunded"
    back = [e for e in await rows(db, WalletEntry) if e.amount < 0]
    assert [(e.reason, e.amount) for e in back] == [("refund", -1100)]
    assert sorted(notes(await rows(db, Outbox))) == [
        "owner_refund",
        "wallet_topped_up",
        "wallet_topup_refunded",
    ]
    # Delivered again: the ledger has it; the wallet is not debited twice.
    assert await deliver_stripe_event(db, stripe, refunded, now) == "duplicate"
    assert len([e for e in await rows(db, WalletEntry) if e.amount < 0]) == 1


async def test_refund_of_a_spent_topup_is_refused_and_refunds_nothing(db, fake, stripe, now):
    shop, order, _ = await paid_topup(db, fake, stripe, now)
    async with db.transaction() as s:
        acc = await wallet.account_for(s, shop.buyer.id, wallet.BALANCE, "USD", now)
        await wallet.debit(s, acc, 200, reason="hold", key="spent-elsewhere", now=now)
    e = await refused(db, shop.owner, order.order_no, now)
    assert (e.key, e.params) == (
        "topup_spent",
        {"order_no": order.order_no, "credited": "11.00 USD", "balance": "9.00 USD"},
    )
    assert [r for r in await rows(db, Outbox) if r.kind == "refund_payment"] == []


async def test_a_refund_made_elsewhere_takes_back_only_what_is_left(db, fake, stripe, now):
    """Refunded from the provider's dashboard after the buyer spent some: the balance goes
    to zero, never below, and the shortfall is on record."""
    shop, order, _ = await paid_topup(db, fake, stripe, now)
    async with db.transaction() as s:
        acc = await wallet.account_for(s, shop.buyer.id, wallet.BALANCE, "USD", now)
        await wallet.debit(s, acc, 700, reason="hold", key="spent-elsewhere", now=now)
    await fake.refund(order.provider_ref)
    (refunded,) = stripe_events(fake, "charge.refunded")
    assert await deliver_stripe_event(db, stripe, refunded, now) == "recorded"
    assert await balance(db, shop.buyer) == 0
    back = [e.amount for e in await rows(db, WalletEntry) if e.reason == "refund"]
    assert back == [-400]


async def test_only_its_owner_takes_a_topup_off_sale_and_only_once(db, stripe, now):
    shop = await make_shop(db, now)
    p = await product(db, shop, now, stripe)
    async with db.transaction() as s:
        buyer = await s.get(User, shop.buyer.id)
        with pytest.raises(RuleError) as e:
            await remove_topup(s, buyer, p.id, now, admin_ids=())
        assert (e.value.key, e.value.params) == ("topup_unknown", {"n": p.id})
    async with db.transaction() as s:
        owner = await s.get(User, shop.owner.id)
        await remove_topup(s, owner, p.id, now, admin_ids=())
    async with db.transaction() as s:
        owner = await s.get(User, shop.owner.id)
        with pytest.raises(RuleError) as e:
            await remove_topup(s, owner, p.id, now, admin_ids=())
        assert e.value.key == "topup_unknown"
        assert await topup_products(s) == []


async def test_a_disputed_topup_won_back_credits_the_balance_again(db, fake, stripe, now):
    """A dispute takes back what the top-up credited (money and bonus); the owner wins it,
    so the buyer paid after all: the balance the dispute took comes back, once."""
    from tests.stripe_fixtures import dispute
    from tests.unit.test_stripe_lifecycle import send

    shop, _order, paid = await paid_topup(db, fake, stripe, now)
    pi = paid["data"]["object"]["payment_intent"]
    dp = dispute(pi, amount=1000)
    await send(db, stripe, "charge.dispute.created", dp, now)
    assert await balance(db, shop.buyer) == 0
    closed = dict(dp, status="won")
    assert await send(db, stripe, "charge.dispute.closed", closed, now) == "dispute_won"
    assert await balance(db, shop.buyer) == 1100
    assert await send(db, stripe, "charge.dispute.closed", closed, now) in (
        "duplicate",
        "already_recorded",
    )
    assert await balance(db, shop.buyer) == 1100
    async with db.session() as s:
        (acc,) = (await s.execute(select(WalletAccount))).scalars().all()
        assert await wallet.recompute(s, acc.id) == acc.balance == 1100


async def test_the_rest_of_a_partly_refunded_topup_can_be_refunded(db, fake, stripe, now):
    """4.00 of the 10.00 top-up was refunded from the dashboard (4.00 taken back). /refund
    of the rest asks only for what the balance still owes that top-up (6.00 + the 1.00
    bonus), which the 7.00 balance holds: it is not refused as spent."""
    shop, order, _ = await paid_topup(db, fake, stripe, now)
    await fake.refund(order.provider_ref, 400)
    (partial,) = stripe_events(fake, "charge.refunded")
    assert await deliver_stripe_event(db, stripe, partial, now) == "partial_refund"
    assert await balance(db, shop.buyer) == 700
    asked = await ask(db, shop.owner, order.order_no, now)
    assert asked.money == Money(600, "USD")
    (call,) = await run_refunds(db, stripe, now)
    assert call.status == "done"
    await fake.settle()
    rest = [e for e in stripe_events(fake, "charge.refunded") if e["id"] != partial["id"]]
    assert await deliver_stripe_event(db, stripe, rest[-1], now) == "recorded"
    assert await balance(db, shop.buyer) == 0
    (o,) = await rows(db, Order)
    assert o.status == "refunded"


async def test_a_refund_before_the_topups_payment_takes_nothing_from_the_balance(
    db, fake, stripe, now
):
    """The refund of a top-up reaches us before its payment (events reorder): the top-up
    never credited anything, so the balance the buyer has from elsewhere is not touched;
    the payment arriving after credits nothing either (the order is refunded)."""
    from tests.stripe_fixtures import completed_session, refunded_charge
    from tests.unit.test_stripe_lifecycle import send

    shop = await make_shop(db, now)
    p = await product(db, shop, now, stripe)
    async with db.transaction() as s:
        acc = await wallet.account_for(s, shop.buyer.id, wallet.BALANCE, "USD", now)
        await wallet.credit(s, acc, 500, reason="adjust", key="earlier", now=now)
    order = await checkout(db, stripe, shop, p, now)
    charge = refunded_charge("pi_early", amount=1000, refunded=1000, order_no=order.order_no)
    await send(db, stripe, "charge.refunded", charge, now)
    assert await balance(db, shop.buyer) == 500
    session = completed_session(order.order_no, amount=1000, payment_intent="pi_early")
    await send(db, stripe, "checkout.session.completed", session, now)
    assert await balance(db, shop.buyer) == 500
    (o,) = await rows(db, Order)
    assert o.status == "refunded"


async def test_a_topup_disputed_before_its_payment_and_won_is_credited(db, fake, stripe, now):
    """A dispute reaches us before the top-up's payment (events reorder): the payment then
    credits nothing and the order fails, as for a plan. The owner wins the dispute: the
    buyer paid after all, so the top-up is credited (once), as a plan would be granted."""
    from tests.stripe_fixtures import completed_session, dispute
    from tests.unit.test_stripe_lifecycle import send

    shop = await make_shop(db, now)
    p = await product(db, shop, now, stripe)
    order = await checkout(db, stripe, shop, p, now)
    dp = dispute("pi_disputed", amount=1000, metadata={"order_no": order.order_no})
    await send(db, stripe, "charge.dispute.created", dp, now)
    session = completed_session(order.order_no, amount=1000, payment_intent="pi_disputed")
    await send(db, stripe, "checkout.session.completed", session, now)
    assert await balance(db, shop.buyer) == 0
    closed = dict(dp, status="won")
    assert await send(db, stripe, "charge.dispute.closed", closed, now) == "dispute_won"
    assert await balance(db, shop.buyer) == 1100
    (o,) = await rows(db, Order)
    assert o.status == "paid"
    await send(db, stripe, "charge.dispute.closed", closed, now)
    assert await balance(db, shop.buyer) == 1100


async def test_a_topup_being_refunded_cannot_be_spent_meanwhile(db, fake, stripe, now):
    """/refund of a top-up checks the balance still holds its credit, then the provider is
    asked. Until the refund lands, that credit is not spendable: a wallet checkout in
    between pays nothing from it (else the buyer gets the money back AND keeps what it
    bought, and the refund finds the balance spent)."""
    from datetime import timedelta

    from billing.wallet import WalletRules
    from billing.wallet_checkout import open_wallet_checkout
    from storage.models import Plan

    rules = WalletRules(
        points_per_unit={}, points_min=1, points_cap_percent=0, earn_points_per_unit=0
    )
    shop, order, _ = await paid_topup(db, fake, stripe, now)
    asked = await ask(db, shop.owner, order.order_no, now)
    assert asked.money == Money(1000, "USD")
    async with db.session() as s:
        buyer = await s.get(User, shop.buyer.id)
        plan = await s.get(Plan, shop.plan.id)
        with pytest.raises(RuleError) as e:
            await open_wallet_checkout(
                s,
                buyer,
                plan,
                Money(499, "USD"),
                None,
                use_balance=True,
                use_points=False,
                rules=rules,
                now=now,
                public_url="https://gatepass.example",
                timeout=timedelta(hours=1),
            )
        assert e.value.key == "wallet_nothing_to_use"
    (call,) = await run_refunds(db, stripe, now)
    assert call.status == "done"
    await fake.settle()
    (refunded,) = stripe_events(fake, "charge.refunded")
    assert await deliver_stripe_event(db, stripe, refunded, now) == "recorded"
    assert await balance(db, shop.buyer) == 0
    back = [e.amount for e in await rows(db, WalletEntry) if e.reason == "refund"]
    assert back == [-1100]
