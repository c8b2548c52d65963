"""The paid webhook's audit rows: `order.paid` and the grant's rows go in ONE INSERT (a round
trip fewer on every payment), `order.paid` first, each with the values it always had."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.sql.dml import Insert

from billing.ingest import ingest_webhook
from billing.providers.sandbox_provider import SandboxProvider
from storage.fastexec import UnitSession
from storage.models import AuditLog, Membership
from tests.factories import SANDBOX_SECRET, make_order, make_shop, sandbox_event


async def test_paid_event_writes_its_audit_rows_in_one_insert(db, now, monkeypatch):
    provider = SandboxProvider(SANDBOX_SECRET, "http://127.0.0.1:1")
    shop = await make_shop(db, now)
    order = await make_order(db, shop, now)
    audit_inserts: list[object] = []
    execute = UnitSession.execute

    async def counting(self, statement, params=None, **kw):
        if isinstance(statement, Insert) and statement.table.name == "audit_log":
            audit_inserts.append(params)
        return await execute(self, statement, params, **kw)

    monkeypatch.setattr(UnitSession, "execute", counting)
    headers, body = sandbox_event(order, event_id="evt_audit")
    ack, outcome = await ingest_webhook(db, provider, headers, body, now)
    assert (ack.status, outcome) == (200, "granted")
    assert len(audit_inserts) == 1
    async with db.session() as s:
        m = (await s.execute(select(Membership))).scalar_one()
        rows = (
            (
                await s.execute(
                    select(AuditLog)
                    .where(AuditLog.actor == "provider:sandbox")
                    .order_by(AuditLog.id)
                )
            )
            .scalars()
            .all()
        )
    assert [(r.actor, r.action, r.target, r.at) for r in rows] == [
        ("provider:sandbox", "order.paid", f"order:{order.order_no}", now),
        ("provider:sandbox", "membership.grant", f"membership:{m.id}", now),
    ]
    assert rows[0].detail and rows[1].detail and "order " in rows[1].detail
