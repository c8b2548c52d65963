"""The `gatepass` command: run, demo, db upgrade, config check, members import,
webhooks replay."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from gatepass.config import ConfigError, check_production, load_settings

T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gatepass", description="Sell access to chat groups.")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="web server + Telegram bot + outbox worker")
    run.add_argument("--config", required=True, help="TOML file (see config.example.toml)")
    demo = sub.add_parser("demo", help="the whole flow on embedded defaults, no accounts")
    demo.add_argument("--quiet", action="store_true", help="print only the outcome")
    play = sub.add_parser(
        "playground", help="the product locally in a browser: bot, Telegram emulator and "
                           "sandbox payments on embedded defaults, until Ctrl-C")
    play.add_argument("--port", type=int, default=8089,
                      help="port of the page and the emulator (default 8089)")
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_cmd", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations up to the newest")
    up.add_argument("--config", help="TOML file (default: [database] defaults and env)")
    check = sub.add_parser("config", help="configuration helpers")
    check_sub = check.add_subparsers(dest="config_cmd", required=True)
    chk = check_sub.add_parser("check", help="validate a config file and say what is offered")
    chk.add_argument("--config", required=True)
    members = sub.add_parser("members", help="membership helpers")
    members_sub = members.add_subparsers(dest="members_cmd", required=True)
    imp = members_sub.add_parser(
        "import", help="grant access to members who paid elsewhere, from a CSV file",
        description="CSV with a header: telegram_id,username,group,expires_at (expires_at: "
                    "ISO date or date-time, blank = lifetime). Exit 0: all rows imported; "
                    "1: some rows were bad (the others are kept); 2: config or file error.")
    imp.add_argument("file", help="the CSV file (UTF-8)")
    imp.add_argument("--config", required=True, help="TOML file (for [database])")
    imp.add_argument("--group", help="group number or chat id for rows with no group")
    hooks = sub.add_parser("webhooks", help="stored provider webhooks")
    hooks_sub = hooks.add_subparsers(dest="webhooks_cmd", required=True)
    replay = hooks_sub.add_parser(
        "replay", help="run a stored webhook again through the same path (idempotent)",
        description="Runs the body kept for this event through the same ingest path. An "
                    "event processed without error is left alone; one that failed or was "
                    "stored unapplied is applied now. Exit 0: applied or nothing to do; 2: "
                    "unknown event, no body kept, or it still fails.")
    replay.add_argument("provider", help="provider name, e.g. stripe")
    replay.add_argument("event_id", help="the provider's event id (webhook_event.event_id)")
    replay.add_argument("--config", required=True, help="TOML file (database and provider)")
    return p


class DatabaseFailed(Exception):
    """A command's database work failed: one line for the operator, no traceback."""


def _one_line_db_errors(
    fn: Callable[..., Coroutine[Any, Any, T]],
) -> Callable[..., Coroutine[Any, Any, T]]:
    """Turn the database errors of a command's `_run` into DatabaseFailed."""

    async def run(*args: Any) -> T:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return await fn(*args)
        except SQLAlchemyError as e:
            raise DatabaseFailed(
                f"database error: {e.__class__.__name__}: {str(e).splitlines()[0]} "
                "(is the schema up to date? gatepass db upgrade)") from e

    return run


def _webhooks_replay(args: argparse.Namespace) -> int:
    from billing.replay import ReplayResult, ReplayStatus, replay_event
    from storage.clock import SystemClock
    from gatepass.providers import build_providers
    from storage.db import Database

    settings = load_settings(args.config)
    providers = build_providers(settings)
    provider = providers.get(args.provider)
    if provider is None:
        print(f"gatepass: no provider '{args.provider}' is configured "
              f"(configured: {', '.join(providers) or 'none'})", file=sys.stderr)
        return 2

    @_one_line_db_errors
    async def _run() -> ReplayResult:
        db = Database(settings.database.url)
        try:
            return await replay_event(db, provider, args.event_id, SystemClock().now())
        finally:
            for p in providers.values():
                await p.close()
            await db.dispose()

    try:
        result = asyncio.run(_run())
    except DatabaseFailed as e:
        print(f"gatepass: {e}", file=sys.stderr)
        return 2
    name = f"{args.provider} event {args.event_id}"
    lines = {
        ReplayStatus.APPLIED: f"{name}: replayed: {result.detail}",
        ReplayStatus.ALREADY_PROCESSED: f"{name}: already processed; nothing to do",
        ReplayStatus.NOT_FOUND: f"gatepass: {name} is not stored",
        ReplayStatus.NO_BODY: f"gatepass: {name}: its body is not kept (older than "
                              "webhooks.keep_raw_days, or stored before bodies were kept)",
        ReplayStatus.FAILED: f"gatepass: {name}: replay failed: {result.detail}",
    }
    print(lines[result.status], file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 2


class TextProgress:
    """A one-line progress bar on stderr, redrawn in place on a terminal; elsewhere (a log
    file) a line at each tenth, so the log stays readable."""

    def __init__(self, stream: Any = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._shown = -1

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        step = done * (100 if self.tty else 10) // total
        if step == self._shown and done != total:
            return
        self._shown = step
        filled = self.width * done // total
        bar = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"
        if self.tty:
            self.stream.write("\r" + bar + ("\n" if done == total else ""))
        else:
            self.stream.write(bar + "\n")
        self.stream.flush()


def _members_import(args: argparse.Namespace) -> int:
    from storage.clock import SystemClock
    from membership.importer import ImportFileError, ImportReport, import_members, read_rows
    from storage.db import Database

    settings = load_settings(args.config)
    now = SystemClock().now()
    try:
        with open(args.file, encoding="utf-8-sig", newline="") as f:
            text = f.read()
        rows, bad = read_rows(text, now, args.group)
    except (OSError, UnicodeDecodeError) as e:
        print(f"gatepass: cannot read {args.file}: {e}", file=sys.stderr)
        return 2
    except ImportFileError as e:
        print(f"gatepass: {args.file}: {e}", file=sys.stderr)
        return 2

    @_one_line_db_errors
    async def _run() -> ImportReport | str:
        from membership.importer import find_group

        db = Database(settings.database.url)
        try:
            if args.group:
                async with db.session() as s:
                    if await find_group(s, "telegram", args.group) is None:
                        return f"--group {args.group}: there is no such active group"
            report = ImportReport(total=len(bad), bad=list(bad))
            return await import_members(db, rows, now, on_progress=TextProgress(),
                                        report=report)
        finally:
            await db.dispose()

    try:
        result = asyncio.run(_run())
    except DatabaseFailed as e:
        print(f"gatepass: {e}", file=sys.stderr)
        return 2
    if isinstance(result, str):
        print(f"gatepass: {result}", file=sys.stderr)
        return 2
    for b in result.bad:
        print(f"line {b.line}: {b.reason}")
    print(f"{result.total} rows: {result.granted} granted, {result.extended} extended, "
          f"{result.unchanged} unchanged, {len(result.bad)} bad")
    return 1 if result.bad else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The demo prints its own transcript; only warnings from the service interleave with it.
    level = logging.WARNING if args.cmd in ("demo", "playground") else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.cmd == "run":
            from gatepass.service import Service

            settings = load_settings(args.config)
            check_production(settings)
            service = Service(settings)
            asyncio.run(service.run_forever())
        elif args.cmd == "demo":
            from gatepass.demo import run_demo

            return asyncio.run(run_demo(quiet=args.quiet))
        elif args.cmd == "playground":
            from gatepass.playground import run_playground

            return run_playground(port=args.port)
        elif args.cmd == "db":
            from storage.db import Database
            from storage.migrate import upgrade

            settings = load_settings(args.config)

            async def _up() -> None:
                db = Database(settings.database.url)
                try:
                    await upgrade(db)
                finally:
                    await db.dispose()

            asyncio.run(_up())
            print(f"database is at the newest schema: {settings.database.url.split('@')[-1]}")
        elif args.cmd == "members":
            return _members_import(args)
        elif args.cmd == "webhooks":
            return _webhooks_replay(args)
        elif args.cmd == "config":
            from gatepass.providers import build_providers

            settings = load_settings(args.config)
            check_production(settings)
            names = ", ".join(build_providers(settings)) or "none"
            print(f"config OK; payment providers offered: {names}")
    except ConfigError as e:
        print(f"gatepass: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
