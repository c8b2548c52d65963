"""`gatepass members import`: bad rows reported by line, good rows kept, re-runs change nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import col

from gatepass.cli import TextProgress, main
from membership.grants import grant_days
from membership.importer import ImportFileError, RowError, import_members, parse_expiry, read_rows
from storage.db import Database
from storage.migrate import upgrade
from storage.models import AuditLog, ChatGroup, Membership, Outbox, User
from tests.factories import make_shop

DAY = timedelta(days=1)


def test_expiry_formats(now):
    assert parse_expiry("", now) is None
    assert parse_expiry("2027-01-31", now) == datetime(2027, 2, 1, tzinfo=UTC)
    assert parse_expiry("2027-01-31T18:00:00Z", now) == datetime(2027, 1, 31, 18, tzinfo=UTC)
    assert parse_expiry("2027-01-31 18:00", now) == datetime(2027, 1, 31, 18, tzinfo=UTC)
    assert parse_expiry("2027-01-31T18:00+08:00", now) == datetime(2027, 1, 31, 10, tzinfo=UTC)
    for bad, why in [
        ("31/01/2027", "not an ISO date"),
        ("2020-01-01", "in the past"),
        ("2027-02-30", "not an ISO date"),
    ]:
        with pytest.raises(RowError, match=why):
            parse_expiry(bad, now)


FILE = """\ufefftelegram_id,username,group,expires_at,note
123456789,@alice,1,2027-01-31,paid by bank transfer

987654321,,#1,,lifetime
abc,bob,1,2027-01-31,
555,bob,,2027-01-31,
556,bad-name,1,2027-01-31,
557,carol,1,yesterday,
558,dave,1,2027-01-31
559,"erin, the second",1,2027-01-31,
560,frank,x,2027-01-31,
"""


def test_read_rows_reports_each_bad_line(now):
    good, bad = read_rows(FILE, now)
    assert [(r.line, r.telegram_id, r.username, r.group_ref, r.expires_at) for r in good] == [
        (2, "123456789", "alice", "1", datetime(2027, 2, 1, tzinfo=UTC)),
        (4, "987654321", None, "1", None),
    ]
    assert [(b.line, b.reason.split(" ")[0]) for b in bad] == [
        (5, "telegram_id"),
        (6, "group"),
        (7, "username"),
        (8, "expires_at"),
        (9, "has"),
        (10, "username"),
        (11, "group"),
    ]
    assert "fill the group column or give --group" in bad[1].reason
    assert bad[4].reason == "has 4 fields; the header has 5"


def test_default_group_fills_blanks_only(now):
    good, bad = read_rows("telegram_id,expires_at,group\n1,,\n2,,7\n", now, default_group="3")
    assert [r.group_ref for r in good] == ["3", "7"] and bad == []


@pytest.mark.parametrize(
    "text,why",
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("telegram_id,username\n1,a\n", "expires_at"),
        ("telegram_id,expires_at\n1,\n", r"group \(or give --group\)"),
        ("telegram_id,group,expires_at,group\n", "more than once"),
    ],
)
def test_file_errors(text, why, now):
    with pytest.raises(ImportFileError, match=why):
        read_rows(text, now)


async def _memberships(db: Database) -> list[tuple[str, str, datetime | None]]:
    async with db.session() as s:
        rows = (
            await s.execute(
                select(
                    col(User.platform_user_id), col(Membership.status), col(Membership.expires_at)
                )
                .join(User, col(User.id) == col(Membership.user_id))
                .order_by(col(User.platform_user_id))
            )
        ).all()
    return [tuple(r) for r in rows]


async def test_import_grants_extends_and_is_idempotent(db, now):
    shop = await make_shop(db, now)  # buyer 2000 holds group 1 for 30 days from now
    async with db.transaction() as s:
        buyer = await s.get(User, shop.buyer.id)
        await grant_days(s, buyer, await s.get(ChatGroup, 1), 30, now, actor="t", reason="t")
    text = (
        "telegram_id,username,group,expires_at\n"
        "111,alice,1,2027-06-30\n"  # new: granted to the end of June 30
        "2000,buyer,1,2027-06-30\n"  # running to Dec 21: extended
        "222,,-1001,\n"  # by chat id, lifetime
        "333,,9,2027-06-30\n"  # no such group
        "1000,owner,1,2027-06-30\n"
    )  # the group's owner
    good, _ = read_rows(text, now)
    seen: list[tuple[int, int]] = []
    report = await import_members(db, good, now, on_progress=lambda d, t: seen.append((d, t)))
    assert (report.granted, report.extended, report.unchanged) == (2, 1, 0)
    assert [(b.line, b.reason) for b in report.bad] == [
        (5, "there is no active group 9"),
        (6, "1000 owns group 1"),
    ]
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    end_june = datetime(2027, 7, 1, tzinfo=UTC)
    assert await _memberships(db) == [
        ("111", "active", end_june),
        ("2000", "active", end_june),
        ("222", "active", None),
    ]
    async with db.session() as s:
        alice = (
            await s.execute(select(User).where(col(User.platform_user_id) == "111"))
        ).scalar_one()
        actors = {
            a.actor
            for a in (
                await s.execute(
                    select(AuditLog).where(
                        col(AuditLog.action).in_(["membership.grant", "membership.extend"]),
                        col(AuditLog.actor) == "import",
                    )
                )
            ).scalars()
        }
        kinds = [
            o.kind for o in (await s.execute(select(Outbox).order_by(col(Outbox.id)))).scalars()
        ]
    assert alice.username == "alice" and actors == {"import"}
    assert kinds.count("deliver_invite") == 3  # the buyer's own + alice + 222
    # The same file again: nothing changes, nothing more is sent.
    again = await import_members(db, good, now + DAY)
    assert (again.granted, again.extended, again.unchanged, len(again.bad)) == (0, 0, 3, 2)
    async with db.session() as s:
        assert len((await s.execute(select(Outbox))).scalars().all()) == len(kinds)


def test_cli_exit_codes_and_summary(tmp_path, capsys):
    db_file = tmp_path / "g.db"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{db_file}"\n')

    async def prepare() -> None:
        db = Database(f"sqlite+aiosqlite:///{db_file}")
        await upgrade(db)
        await make_shop(db, datetime.now(UTC))
        await db.dispose()

    asyncio.run(prepare())
    ok = tmp_path / "ok.csv"
    ok.write_text("telegram_id,username,expires_at\n111,alice,2099-01-01\n222,,\n")
    assert main(["members", "import", str(ok), "--config", str(cfg), "--group", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "2 rows: 2 granted, 0 extended, 0 unchanged, 0 bad"
    assert "[##############################] 2/2" in err

    some = tmp_path / "some.csv"
    some.write_text("telegram_id,group,expires_at\n333,1,2099-01-01\nx,1,\n444,5,\n")
    assert main(["members", "import", str(some), "--config", str(cfg)]) == 1
    out, _ = capsys.readouterr()
    assert out.splitlines() == [
        "line 3: telegram_id 'x' is not a Telegram user id (a positive number)",
        "line 4: there is no active group 5",
        "3 rows: 1 granted, 0 extended, 0 unchanged, 2 bad",
    ]

    assert main(["members", "import", str(tmp_path / "nope.csv"), "--config", str(cfg)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["members", "import", str(ok), "--config", str(cfg), "--group", "8"]) == 2
    assert "--group 8: there is no such active group" in capsys.readouterr().err
    assert main(["members", "import", str(some), "--config", str(cfg), "--group", "1"]) == 1
    nohead = tmp_path / "nohead.csv"
    nohead.write_text("111,alice,1,2099-01-01\n")
    assert main(["members", "import", str(nohead), "--config", str(cfg)]) == 2
    assert "header lacks" in capsys.readouterr().err
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert main(["members", "import", str(binary), "--config", str(cfg)]) == 2


def test_progress_bar_lines_when_not_a_terminal():
    import io

    out = io.StringIO()
    bar = TextProgress(out, width=10)
    for i in range(1, 101):
        bar(i, 100)
    lines = out.getvalue().splitlines()
    assert (
        len(lines) == 11
        and lines[0] == "[..........] 1/100"
        and lines[-1] == "[##########] 100/100"
    )


async def test_a_group_number_too_big_for_an_id_is_no_group(db, now):
    """A 20-digit group number passes the CSV's shape check but is no id of ours, and the
    database refuses it as a parameter: the row is reported, not a crash of the import."""
    await make_shop(db, now)
    good, _ = read_rows("telegram_id,username,group,expires_at\n111,,99999999999999999999,\n", now)
    report = await import_members(db, good, now)
    assert [(b.line, b.reason) for b in report.bad] == [
        (2, "there is no active group 99999999999999999999")
    ]
    assert report.granted == 0
