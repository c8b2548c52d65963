"""Issue 6: `gatepass webhooks replay <provider> <event_id>` through the CLI entry point, the
raw-body retention sweep, and the [webhooks] keep_raw_days key."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import col

import billing.providers.stripe_provider as stripe_provider
from billing.ingest import ingest_webhook
from billing.providers.stripe_provider import StripeProvider
from gatepass.cli import main
from gatepass.config import ConfigError, load_settings
from scheduler.jobs import Sweeps
from storage.db import Database
from storage.migrate import upgrade
from storage.models import Order, Payment, WebhookEvent
from tests.factories import MovableClock, make_order, make_shop
from tests.stripe_fixtures import SECRET_KEY, WEBHOOK_SECRET, completed_session, signed

NOW = datetime.now(UTC).replace(microsecond=0)


def _config(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "gatepass.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\n[stripe]\nsecret_key = "{SECRET_KEY}"\n'
        f'webhook_secret = "{WEBHOOK_SECRET}"\napi_base = "http://127.0.0.1:9"\n' + extra
    )
    return path


class World:
    """A SQLite database on disk, reached by the test and by the CLI alike."""

    def __init__(self, tmp_path: Path) -> None:
        self.url = f"sqlite+aiosqlite:///{tmp_path}/replay.db"
        self.config = _config(tmp_path, self.url)

    def run(self, coro_fn: Any, *args: Any, **kwargs: Any) -> Any:
        async def _go() -> Any:
            db = Database(self.url)
            try:
                await upgrade(db)
                return await coro_fn(db, *args, **kwargs)
            finally:
                await db.dispose()

        return asyncio.run(_go())


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


async def _paid_session(db: Database, *, event_id: str) -> tuple[str, str]:
    """A pending Stripe order and its checkout.session.completed delivered: (order_no, outcome)."""
    shop = await make_shop(db, NOW)
    order = await make_order(db, shop, NOW, provider="stripe")
    headers, body, _ = signed(
        "checkout.session.completed", completed_session(order.order_no), event_id=event_id
    )
    provider = StripeProvider(SECRET_KEY, WEBHOOK_SECRET, api_base="http://127.0.0.1:9")
    ack, outcome = await ingest_webhook(db, provider, headers, body, NOW)
    assert ack.status == 200
    return order.order_no, outcome


async def _state(db: Database, order_no: str) -> tuple[str, int, Any]:
    async with db.session() as s:
        status = (
            await s.execute(select(col(Order.status)).where(col(Order.order_no) == order_no))
        ).scalar_one()
        payments = (await s.execute(select(func.count()).select_from(Payment))).scalar_one()
        ev = (await s.execute(select(WebhookEvent))).scalars().all()
    return status, payments, [(e.event_id, e.processed_at is not None, e.error) for e in ev]


def test_replaying_a_processed_event_is_a_reported_no_op(world, capsys):
    order_no, outcome = world.run(_paid_session, event_id="evt_ok")
    assert outcome == "granted"
    before = world.run(_state, order_no)
    assert main(["webhooks", "replay", "stripe", "evt_ok", "--config", str(world.config)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == "stripe event evt_ok: already processed; nothing to do"
    assert world.run(_state, order_no) == before


def test_an_event_mishandled_by_a_bug_is_applied_by_replay_after_the_fix(
    world, capsys, monkeypatch
):
    def buggy(event_id: str, event_type: str, obj: dict[str, Any]) -> Any:
        raise KeyError("amount_totl")  # a typo that shipped

    with monkeypatch.context() as m:
        m.setitem(stripe_provider._MAPPERS, "checkout.session.completed", buggy)
        order_no, outcome = world.run(_paid_session, event_id="evt_bug")
        assert outcome == "malformed"
        # Still broken: the replay says so and exits 2, nothing is applied.
        assert main(["webhooks", "replay", "stripe", "evt_bug", "--config", str(world.config)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("gatepass: stripe event evt_bug: replay failed: still malformed")
        assert "\n" not in err
    status, payments, events = world.run(_state, order_no)
    assert (status, payments) == ("pending", 0)
    assert events[0][2].startswith("malformed: ")
    # The fix is deployed (the monkeypatch is gone): the replay applies it, once.
    assert main(["webhooks", "replay", "stripe", "evt_bug", "--config", str(world.config)]) == 0
    assert capsys.readouterr().out.strip() == "stripe event evt_bug: replayed: granted"
    assert world.run(_state, order_no) == ("paid", 1, [("evt_bug", True, None)])
    assert main(["webhooks", "replay", "stripe", "evt_bug", "--config", str(world.config)]) == 0
    assert "already processed" in capsys.readouterr().out
    assert world.run(_state, order_no) == ("paid", 1, [("evt_bug", True, None)])


def test_an_event_whose_processing_failed_is_applied_by_replay(world, capsys, monkeypatch):
    from billing import payments

    async def broken(session: Any, event: Any, now: Any) -> str:
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as m:
        m.setitem(payments.HANDLERS, payments.EventKind.PAID, broken)
        with pytest.raises(AssertionError):  # the webhook got a 500
            world.run(_paid_session, event_id="evt_500")
    order_no = world.run(_only_order)
    assert world.run(_state, order_no)[2] == [("evt_500", False, "RuntimeError: disk on fire")]
    assert main(["webhooks", "replay", "stripe", "evt_500", "--config", str(world.config)]) == 0
    assert capsys.readouterr().out.strip() == "stripe event evt_500: replayed: granted"
    assert world.run(_state, order_no) == ("paid", 1, [("evt_500", True, None)])


async def _only_order(db: Database) -> str:
    async with db.session() as s:
        return (await s.execute(select(col(Order.order_no)))).scalar_one()


def test_unknown_event_unknown_provider_and_dropped_body_exit_2(world, capsys):
    world.run(_paid_session, event_id="evt_old")
    cfg = str(world.config)
    assert main(["webhooks", "replay", "stripe", "evt_nope", "--config", cfg]) == 2
    assert capsys.readouterr().err.strip() == "gatepass: stripe event evt_nope is not stored"
    assert main(["webhooks", "replay", "alipay", "evt_old", "--config", cfg]) == 2
    assert "no provider 'alipay'" in capsys.readouterr().err

    async def _fail_and_forget(db: Database) -> int:
        async with db.transaction() as s:
            row = (await s.execute(select(WebhookEvent))).scalar_one()
            row.error = "unknown_order"
        sweeps = Sweeps(
            db,
            MovableClock(NOW),
            interval_seconds=30,
            reminder_days=3,
            grace_hours=24,
            keep_raw_bodies=timedelta(days=30),
        )
        return await sweeps.forget_bodies(NOW + timedelta(days=31))

    assert world.run(_fail_and_forget) == 1
    assert main(["webhooks", "replay", "stripe", "evt_old", "--config", cfg]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gatepass: stripe event evt_old: its body is not kept")


async def test_retention_drops_only_bodies_older_than_the_setting(db, now, stripe):
    shop = await make_shop(db, now)
    for age_days, eid in ((40, "evt_old"), (29, "evt_recent"), (0, "evt_new")):
        order = await make_order(db, shop, now, provider="stripe")
        headers, body, _ = signed(
            "checkout.session.completed", completed_session(order.order_no), event_id=eid
        )
        ack, _ = await ingest_webhook(db, stripe, headers, body, now - timedelta(days=age_days))
        assert ack.status == 200
    sweeps = Sweeps(
        db,
        MovableClock(now),
        interval_seconds=30,
        reminder_days=3,
        grace_hours=24,
        batch=1,
        keep_raw_bodies=timedelta(days=30),
    )
    assert await sweeps.forget_bodies(now) == 1
    assert await sweeps.forget_bodies(now) == 0
    async with db.session() as s:
        kept = {
            e.event_id: e.raw_body is not None
            for e in (await s.execute(select(WebhookEvent))).scalars()
        }
    assert kept == {"evt_old": False, "evt_recent": True, "evt_new": True}


def test_keep_raw_days_is_validated_in_one_line(tmp_path, capsys):
    for value, needle in (("0", "greater than or equal to 1"), ('"month"', "valid integer")):
        path = _config(
            tmp_path, "sqlite+aiosqlite:///x.db", f"[webhooks]\nkeep_raw_days = {value}\n"
        )
        with pytest.raises(ConfigError, match=f"webhooks.keep_raw_days: .*{needle}"):
            load_settings(path, environ={})
        assert main(["config", "check", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "webhooks.keep_raw_days" in err
    ok = _config(tmp_path, "sqlite+aiosqlite:///x.db", "[webhooks]\nkeep_raw_days = 7\n")
    assert load_settings(ok, environ={}).webhooks.keep_raw_days == 7
    assert load_settings(None, environ={}).webhooks.keep_raw_days == 30


async def _kept_stars_payment(db: Database) -> str:
    """A pending Stars order whose successful_payment the bot kept unapplied."""
    from billing.ingest import record_unusable
    from storage.money import Money

    shop = await make_shop(db, NOW, prices=(Money(250, "XTR"),))
    order = await make_order(db, shop, NOW, provider="stars", price=Money(250, "XTR"))
    fields = {
        "currency": "XTR",
        "total_amount": 250,
        "invoice_payload": order.order_no,
        "telegram_payment_charge_id": "stxtKEPT",
        "provider_payment_charge_id": "",
    }
    async with db.transaction() as s:
        body = json.dumps({"successful_payment": fields}).encode()
        await record_unusable(s, "stars", "update:7:42", "successful_payment", "a bug", body, NOW)
    return order.order_no


def test_a_stars_payment_the_bot_kept_is_applied_by_replay(world, capsys, tmp_path):
    order_no = world.run(_kept_stars_payment)
    config = _config(
        tmp_path,
        world.url,
        '[telegram]\ntoken = "123456:ABCdefGhIJKlmnOPqrsTUVwxyz123456789"\n'
        'api_server = "http://127.0.0.1:9"\n',
    )
    assert main(["webhooks", "replay", "stars", "update:7:42", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "stars event update:7:42: replayed: granted"
    status, payments, events = world.run(_state, order_no)
    assert (status, payments) == ("paid", 1)
    assert events == [("update:7:42", True, None)]
