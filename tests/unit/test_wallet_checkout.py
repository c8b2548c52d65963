"""Paying a plan with the wallet (billing/wallet_checkout.py) against the local Stripe host:
a wallet-only order is paid at once with no provider; a mixed one holds the wallet part
until the remainder is paid (committed, points earned), expires (released) or fails at the
provider (released); a refund returns each part once; /orders and /stats say how."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlmodel import col

from billing.errors import PaymentError
from billing.ingest import ingest_webhook
from billing.providers.stripe_provider import StripeProvider
from billing.reconcile import reconcile_pending
from billing.wallet import (
    BALANCE,
    POINTS,
    POINTS_CURRENCY,
    WalletRules,
    account_for,
    credit,
    debit,
    recompute,
    release_holds,
)
from billing.wallet_checkout import open_wallet_checkout
from billing.wallet_settle import use_wallet_rules
from bot.access_texts import orders_lines
from membership.errors import RuleError
from membership.reports import owner_stats, user_orders
from storage.models import (
    Membership,
    Order,
    Outbox,
    Payment,
    Plan,
    User,
    WalletAccount,
    WalletEntry,
    WalletHold,
)
from storage.money import Money
from tests.factories import deliver_stripe_event, make_shop, stripe_events
from tests.stripe_fixtures import SECRET_KEY, WEBHOOK_SECRET, completed_session, signed
from tests.unit.test_ledger_rules import rows, run_refunds
from tests.unit.test_order_refunds import ask

RULES = WalletRules(
    points_per_unit={"CNY": 10},  # 10 points = 1.00 CNY
    points_min=10,
    points_cap_percent=50,
    earn_points_per_unit=1,
)
PRICE = Money(990, "CNY")
TIMEOUT = timedelta(hours=1)


@pytest.fixture(autouse=True)
def wallet_on() -> Iterator[None]:
    use_wallet_rules(RULES)
    yield
    use_wallet_rules(None)


async def seed(db, user, now, *, balance: int = 0, points: int = 0) -> None:
    """What the buyer's wallet holds (top-ups land in another branch: a credit stands in)."""
    async with db.transaction() as s:
        if balance:
            acct = await account_for(s, user.id, BALANCE, "CNY", now)
            await credit(s, acct, balance, reason="adjust", key=f"seed:b:{user.id}", now=now)
        if points:
            acct = await account_for(s, user.id, POINTS, POINTS_CURRENCY, now)
            await credit(s, acct, points, reason="adjust", key=f"seed:p:{user.id}", now=now)


async def wallet(db, user) -> dict[str, int]:
    """The buyer's balances, each checked against the sum of its entries."""
    out = {}
    async with db.session() as s:
        for a in (
            (await s.execute(select(WalletAccount).where(col(WalletAccount.user_id) == user.id)))
            .scalars()
            .all()
        ):
            assert await recompute(s, a.id) == a.balance
            out[a.kind] = a.balance
    return out


async def buy(db, shop, now, provider=None, **kw) -> Order:
    async with db.session() as s:
        user = await s.get(User, shop.buyer.id)
        plan = await s.get(Plan, shop.plan.id)
        started = await open_wallet_checkout(
            s,
            user,
            plan,
            PRICE,
            provider,
            use_balance=kw.get("use_balance", True),
            use_points=kw.get("use_points", True),
            rules=RULES,
            now=now,
            public_url="https://gatepass.example",
            timeout=TIMEOUT,
        )
        return started.order


async def holds(db, order) -> list[str]:
    return sorted(
        h.status for h in await rows(db, WalletHold, col(WalletHold.order_id) == order.id)
    )


async def order_now(db, order) -> Order:
    async with db.session() as s:
        got = await s.get(Order, order.id)
        assert got is not None
        return got


async def shop_cny(db, now):
    return await make_shop(db, now, prices=(PRICE,))


async def test_a_wallet_only_order_is_paid_at_once_without_a_provider(db, now):
    shop = await shop_cny(db, now)
    await seed(db, shop.buyer, now, balance=1000)
    order = await buy(db, shop, now)
    paid = await order_now(db, order)
    assert (paid.status, paid.provider, paid.amount_minor, paid.wallet_minor) == (
        "paid",
        "wallet",
        0,
        990,
    )
    assert paid.paid_at == now and await holds(db, order) == ["committed"]
    # 9.90 paid with balance earns 9 points (1 per whole CNY); points paid nothing here:
    # the balance covered all, so none were used.
    assert await wallet(db, shop.buyer) == {"balance": 10, "points": 9}
    (m,) = await rows(db, Membership)
    assert m.status == "active" and m.user_id == shop.buyer.id
    assert await rows(db, Payment) == []  # no provider money: the ledger is untouched
    (note,) = await rows(db, Outbox, col(Outbox.kind) == "notify")
    assert note.payload["key"] == "wallet_paid"
    assert note.payload["params"]["points"] == 9


async def test_mixed_order_holds_the_wallet_part_and_commits_it_when_paid(db, fake, now):
    stripe = StripeProvider(SECRET_KEY, WEBHOOK_SECRET, api_base=fake.base_url)
    try:
        shop = await shop_cny(db, now)
        await seed(db, shop.buyer, now, balance=300, points=200)
        order = await buy(db, shop, now, stripe)
        # 3.00 balance, then points capped at half the price (49 points = 4.90), the rest
        # 2.00 at Stripe.
        assert (order.wallet_minor, order.points_used, order.points_minor, order.amount_minor) == (
            300,
            49,
            490,
            200,
        )
        assert order.status == "pending" and order.provider == "stripe"
        assert await holds(db, order) == ["held", "held"]
        assert await wallet(db, shop.buyer) == {"balance": 0, "points": 151}
        await fake.pay(order.provider_ref)
        (done,) = stripe_events(fake, "checkout.session.completed")
        assert done["data"]["object"]["amount_total"] == 200
        assert await deliver_stripe_event(db, stripe, done, now) == "granted"
        assert await holds(db, order) == ["committed", "committed"]
        # Earned on 2.00 money + 3.00 balance = 5 points; a duplicate webhook earns none.
        assert await wallet(db, shop.buyer) == {"balance": 0, "points": 156}
        assert await deliver_stripe_event(db, stripe, done, now) == "duplicate"
        assert await wallet(db, shop.buyer) == {"balance": 0, "points": 156}
        (charge,) = await rows(db, Payment)
        assert charge.amount_minor == 200  # the provider's part only: the ledger rule holds

        # /orders says how it was paid; /stats keeps wallet money out of revenue.
        async with db.session() as s:
            shown, _ = await user_orders(s, shop.buyer.id)
            stats = await owner_stats(s, shop.owner.id, now)
        (line,) = orders_lines(shown, 1, "en")[1:]
        assert "9.90 CNY" in line
        assert "3.00 CNY balance + 49 points (4.90 CNY) + 2.00 CNY stripe" in line
        assert stats.revenue == [Money(200, "CNY")]
        assert (stats.wallet_spent, stats.points_spent) == (
            [Money(300, "CNY")],
            [Money(490, "CNY")],
        )
        assert stats.outstanding == []  # the buyer's balance is spent: nothing owed

        # The owner refunds it: Stripe returns 2.00, the wallet part comes back, the points
        # it earned are taken back; each exactly once.
        await ask(db, shop.owner, order.order_no, now)
        (call,) = await run_refunds(db, stripe, now)
        assert call.status == "done" and call.payload["amount_minor"] == 200
        await fake.settle()
        (refunded,) = stripe_events(fake, "charge.refunded")
        assert await deliver_stripe_event(db, stripe, refunded, now) == "revoked"
        assert (await order_now(db, order)).status == "refunded"
        assert await holds(db, order) == ["returned", "returned"]
        assert await wallet(db, shop.buyer) == {"balance": 300, "points": 200}
        assert await deliver_stripe_event(db, stripe, refunded, now) == "duplicate"
        assert await wallet(db, shop.buyer) == {"balance": 300, "points": 200}
    finally:
        await stripe.close()


async def test_an_unpaid_remainder_expires_and_the_hold_comes_back(db, fake, now):
    stripe = StripeProvider(SECRET_KEY, WEBHOOK_SECRET, api_base=fake.base_url)
    try:
        shop = await shop_cny(db, now)
        await seed(db, shop.buyer, now, balance=500, points=5)  # 5 points: below the minimum
        order = await buy(db, shop, now, stripe)
        assert (order.wallet_minor, order.points_used, order.amount_minor) == (500, 0, 490)
        assert await wallet(db, shop.buyer) == {"balance": 0, "points": 5}
        later = now + TIMEOUT + timedelta(minutes=1)
        counts = await reconcile_pending(
            db,
            {"stripe": stripe},
            later,
            min_age=timedelta(minutes=5),
            order_timeout=TIMEOUT,
            limit=10,
        )
        assert counts["expired"] == 1
        assert (await order_now(db, order)).status == "expired"
        assert await holds(db, order) == ["released"]
        assert await wallet(db, shop.buyer) == {"balance": 500, "points": 5}
        assert await rows(db, Membership) == []
        async with db.session() as s:
            stats = await owner_stats(s, shop.owner.id, later)
        assert stats.outstanding == [Money(500, "CNY")] and stats.wallet_spent == []
    finally:
        await stripe.close()


async def test_a_provider_refusal_fails_the_order_and_releases_the_hold(db, now):
    down = StripeProvider(SECRET_KEY, WEBHOOK_SECRET, api_base="http://127.0.0.1:9")
    try:
        shop = await shop_cny(db, now)
        await seed(db, shop.buyer, now, balance=500)
        with pytest.raises(PaymentError):
            await buy(db, shop, now, down)
        (order,) = await rows(db, Order)
        assert order.status == "failed" and await holds(db, order) == ["released"]
        assert await wallet(db, shop.buyer) == {"balance": 500}
    finally:
        await down.close()


async def test_a_wallet_that_cannot_pay_changes_nothing(db, now):
    shop = await shop_cny(db, now)
    with pytest.raises(RuleError) as e:
        await buy(db, shop, now)
    assert e.value.key == "wallet_nothing_to_use"
    await seed(db, shop.buyer, now, balance=500)
    with pytest.raises(RuleError) as e:
        await buy(db, shop, now)  # no provider for the 4.90 left
    assert (e.value.key, e.value.params) == ("wallet_not_enough", {"rest": "4.90 CNY"})
    with pytest.raises(RuleError) as e:
        await buy(db, shop, now, use_balance=False)  # and no points
    assert e.value.key == "wallet_nothing_to_use"
    assert await rows(db, Order) == [] and await rows(db, WalletHold) == []
    assert await wallet(db, shop.buyer) == {"balance": 500}


async def test_a_balance_spent_meanwhile_rolls_the_whole_order_back(db, now, monkeypatch):
    """Between reading the balance and holding it, the money went elsewhere: the hold's
    compare-and-set misses and the order is not written either."""
    shop = await shop_cny(db, now)
    await seed(db, shop.buyer, now, balance=1000)
    import billing.wallet_checkout as wc

    real_hold = wc.hold

    async def spent_first(session, order_id, parts, at):
        acct = parts[0][0]
        await debit(session, acct, 500, reason="adjust", key="elsewhere", now=at)
        await real_hold(session, order_id, parts, at)

    monkeypatch.setattr(wc, "hold", spent_first)
    with pytest.raises(RuleError) as e:
        await buy(db, shop, now)
    assert e.value.key == "wallet_insufficient"
    assert await rows(db, Order) == [] and await rows(db, WalletHold) == []
    assert await rows(db, WalletEntry, col(WalletEntry.reason) != "adjust") == []
    assert await wallet(db, shop.buyer) == {"balance": 1000}


async def test_the_owner_refunds_a_wallet_only_order_back_into_the_wallet(db, now):
    shop = await shop_cny(db, now)
    await seed(db, shop.buyer, now, balance=1000)
    order = await buy(db, shop, now)
    asked = await ask(db, shop.owner, order.order_no, now, refundable=set())
    assert (asked.provider, asked.money, asked.calls) == ("wallet", Money(990, "CNY"), 0)
    assert (await order_now(db, order)).status == "refunded"
    assert await holds(db, order) == ["returned"]
    assert await wallet(db, shop.buyer) == {"balance": 1000, "points": 0}
    (m,) = await rows(db, Membership)
    assert m.status == "revoked"  # the default refund policy
    with pytest.raises(RuleError) as e:
        await ask(db, shop.owner, order.order_no, now, refundable=set())
    assert e.value.key == "order_refund_not_paid"
    assert await wallet(db, shop.buyer) == {"balance": 1000, "points": 0}


@pytest.mark.parametrize("spent_meanwhile", [False, True])
async def test_a_late_payment_after_expiry_takes_the_wallet_part_again(
    db, fake, now, spent_meanwhile
):
    """Expiry gave the wallet part back; then the provider's payment lands after all (a
    late payment is honoured). If the wallet still holds the part it is taken again and the
    plan granted; if the buyer spent it, the money does not cover the price: it is kept
    apart to be refunded and grants nothing."""
    stripe = StripeProvider(SECRET_KEY, WEBHOOK_SECRET, api_base=fake.base_url)
    try:
        shop = await shop_cny(db, now)
        await seed(db, shop.buyer, now, balance=500)
        order = await buy(db, shop, now, stripe)
        later = now + TIMEOUT + timedelta(minutes=1)
        async with db.transaction() as s:  # expired here, as reconciliation does
            await s.execute(update(Order).where(col(Order.id) == order.id).values(status="expired"))
            await release_holds(s, order.id, later)
        if spent_meanwhile:
            async with db.transaction() as s:
                acct = await account_for(s, shop.buyer.id, BALANCE, "CNY", later)
                await debit(s, acct, 100, reason="adjust", key="spent", now=later)
        headers, body, _ = signed(
            "checkout.session.completed",
            completed_session(order.order_no, 490, "cny", id=order.provider_ref),
        )
        ack, outcome = await ingest_webhook(db, stripe, headers, body, later)
        assert ack.status == 200
        if spent_meanwhile:
            assert outcome == "mismatch"
            assert (await order_now(db, order)).status == "failed"
            assert await rows(db, Membership) == []
            (extra,) = await rows(db, Payment)
            assert extra.extra and extra.amount_minor == 490
            assert await wallet(db, shop.buyer) == {"balance": 400}
            assert await holds(db, order) == ["released"]
        else:
            assert outcome == "granted"
            assert (await order_now(db, order)).status == "paid"
            assert await holds(db, order) == ["committed"]
            assert await wallet(db, shop.buyer) == {"balance": 0, "points": 9}
    finally:
        await stripe.close()


async def test_points_finer_than_the_minor_unit_are_not_spent_for_nothing(db, now):
    """With 1000 points to 1.00 CNY a point is a tenth of a fen. When the balance leaves
    0.05 for points, 50 points pay it: the split must not spend 59 (the 9 extra are worth
    less than a fen and would be floored away, lost to the buyer)."""
    from billing.wallet_checkout import plan_split

    fine = WalletRules(
        points_per_unit={"CNY": 1000}, points_min=1, points_cap_percent=50, earn_points_per_unit=0
    )
    shop = await shop_cny(db, now)
    await seed(db, shop.buyer, now, balance=985, points=1000)
    async with db.session() as s:
        split = await plan_split(s, shop.buyer.id, PRICE, fine, use_balance=True, use_points=True)
    assert (split.wallet_minor, split.points_minor, split.remainder_minor) == (985, 5, 0)
    assert split.points_used == 50


async def test_a_refund_before_the_payment_gives_a_mixed_orders_wallet_part_back(db, fake, now):
    """The provider's refund of a mixed order reaches us before its payment (events
    reorder). The order is refunded and will never grant: its held wallet part must come
    back now, not stay held (nothing else ever settles a refunded order's holds)."""
    from tests.stripe_fixtures import refunded_charge

    stripe = StripeProvider(SECRET_KEY, WEBHOOK_SECRET, api_base=fake.base_url)
    try:
        shop = await shop_cny(db, now)
        await seed(db, shop.buyer, now, balance=500)
        order = await buy(db, shop, now, stripe)
        assert await wallet(db, shop.buyer) == {"balance": 0}
        charge = refunded_charge("pi_early", amount=490, refunded=490, order_no=order.order_no)
        headers, body, _ = signed("charge.refunded", charge)
        ack, _outcome = await ingest_webhook(db, stripe, headers, body, now)
        assert ack.status == 200
        assert (await order_now(db, order)).status == "refunded"
        assert await holds(db, order) == ["released"]
        assert await wallet(db, shop.buyer) == {"balance": 500}
        # Reconciliation never touches a refunded order; the balance is the buyer's again.
        await reconcile_pending(db, {"stripe": stripe}, now + TIMEOUT * 2)
        assert await wallet(db, shop.buyer) == {"balance": 500}
    finally:
        await stripe.close()


@pytest.mark.parametrize("round_", range(3))
async def test_a_payment_racing_the_expiry_spends_the_wallet_part_exactly_once(
    db, fake, now, round_
):
    """The provider's payment and the expiry of a mixed order land at the same moment (on
    PostgreSQL truly at once): whichever wins, the order ends paid, its wallet part spent
    once (never released and kept, never taken twice) and the balance equals its entries."""
    import asyncio

    from billing.reconcile import _Claimed, _expire

    stripe = StripeProvider(SECRET_KEY, WEBHOOK_SECRET, api_base=fake.base_url)
    try:
        shop = await shop_cny(db, now)
        await seed(db, shop.buyer, now, balance=500)
        order = await buy(db, shop, now, stripe)
        async with db.transaction() as s:  # more balance: a second take would find it
            acct = await account_for(s, shop.buyer.id, BALANCE, "CNY", now)
            await credit(s, acct, 200, reason="adjust", key="more", now=now)
        later = now + TIMEOUT + timedelta(minutes=1)
        headers, body, _ = signed(
            "checkout.session.completed",
            completed_session(order.order_no, 490, "cny", id=order.provider_ref),
        )
        claimed = _Claimed(order.id, order.order_no, "stripe", order.provider_ref, True, False)
        _expired, (ack, outcome) = await asyncio.gather(
            _expire(db, claimed, later, "timed out"),
            ingest_webhook(db, stripe, headers, body, later),
        )
        assert ack.status == 200 and outcome == "granted"
        assert (await order_now(db, order)).status == "paid"
        assert await holds(db, order) == ["committed"]
        assert await wallet(db, shop.buyer) == {"balance": 200, "points": 9}
    finally:
        await stripe.close()


async def test_a_subscription_is_never_paid_from_the_wallet(db, now):
    """The Telegram menu offers no wallet for a recurring plan; the rule itself refuses it
    too, so no other front end can open one: nothing is held, no order is made."""
    from billing.wallet import BALANCE, WalletRules, account_for, credit
    from billing.wallet_checkout import open_wallet_checkout
    from membership.errors import RuleError
    from storage.models import Order, Plan, User, WalletHold
    from storage.money import Money

    async with db.transaction() as s:
        owner = User(platform="telegram", platform_user_id="71", created_at=now)
        buyer = User(platform="telegram", platform_user_id="72", created_at=now)
        s.add_all([owner, buyer])
        await s.flush()
        plan = Plan(
            owner_user_id=owner.id, title="Monthly", duration_days=30, recurring=True,
            created_at=now,
        )  # fmt: skip
        s.add(plan)
        account = await account_for(s, buyer.id, BALANCE, "USD", now)
        await credit(s, account, 10_000, reason="adjust", key="seed", now=now)
    rules = WalletRules(points_per_unit={"CNY": 10}, points_min=10, points_cap_percent=50,
                        earn_points_per_unit=1)  # fmt: skip
    async with db.session() as s:
        buyer_row = await s.get(User, buyer.id)
        plan_row = await s.get(Plan, plan.id)
        assert buyer_row is not None and plan_row is not None
        with pytest.raises(RuleError) as refused:
            await open_wallet_checkout(
                s, buyer_row, plan_row, Money(499, "USD"), None, use_balance=True,
                use_points=False, rules=rules, now=now, public_url="https://x.example",
                timeout=timedelta(minutes=30),
            )  # fmt: skip
        assert refused.value.key == "wallet_recurring"
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Order))).scalar_one() == 0
        assert (await s.execute(select(func.count()).select_from(WalletHold))).scalar_one() == 0
