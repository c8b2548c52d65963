"""The `gatepass` command: run, wechat, demo, db upgrade, config check, members import,
webhooks replay.

Each command is one `_add_<name>(commands)` function that adds its parser and sets its
handler; COMMANDS lists them in the order `--help` shows. A handler returns the exit code.
A mistake in the config or something outside that is not as the config says (ConfigError,
StartupError) ends as one line on stderr and exit 2; `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from importlib import metadata
from typing import Any, TypeVar

from gatepass.config import ConfigError, Settings, check_production, load_settings
from gatepass.startup import StartupError, check_sqlite_folder, database_problem, failing_as

T = TypeVar("T")
Handler = Callable[[argparse.Namespace], int]

CONFIG_HELP = (
    "the TOML config file (see config.example.toml); GATEPASS__SECTION__KEY "
    "environment variables override it"
)


def _version() -> str:
    try:
        return metadata.version("gatepass")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _choose(
    parser: argparse.ArgumentParser, commands: argparse._SubParsersAction[argparse.ArgumentParser]
) -> Handler:
    """The handler of a command group called without its sub-command: one line naming
    the choices (argparse would say "the following arguments are required: cmd")."""

    def handler(args: argparse.Namespace) -> int:
        names = ", ".join(commands.choices)
        print(
            f"{parser.prog}: choose a command: {names} (see {parser.prog} --help)", file=sys.stderr
        )
        return 2

    return handler


def _group(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """A command with sub-commands (`gatepass db upgrade`)."""
    parser = commands.add_parser(name, help=help_, description=help_)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    parser.set_defaults(handler=_choose(parser, sub))
    return sub


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "run",
        help="web server + Telegram bot + outbox worker",
        description="Start the service: web server (webhooks, /healthz, "
        "/metrics), the Telegram bot, the outbox worker and "
        "the scheduler. Applies pending migrations first.",
    )
    p.add_argument("--config", required=True, help=CONFIG_HELP)
    p.set_defaults(handler=_run)


def _add_wechat(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "wechat",
        help="the WeChat bot: a worker connected to a Wechaty puppet service",
        description="Connect to the puppet service of [wechat] (and again after every drop), "
        "answer what people write to the bot, deliver the WeChat outbox rows (room adds, "
        "removals, notices) and guard the rooms, until SIGTERM or Ctrl-C. Runs beside "
        "`gatepass run`, on the same database.",
    )
    p.add_argument("--config", required=True, help=CONFIG_HELP)
    p.set_defaults(handler=_wechat)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "demo",
        help="the whole flow on embedded defaults, no accounts",
        description="Plays an owner, a buyer and a stranger against a "
        "local Telegram emulator and the sandbox provider, "
        "printed as a chat transcript. Exit 0: every step "
        "happened as it should.",
    )
    p.add_argument("--quiet", action="store_true", help="print only the outcome")
    p.set_defaults(handler=_demo)


def _add_playground(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "playground",
        help="the product locally in a browser: bot, Telegram emulator and "
        "sandbox payments on embedded defaults, until Ctrl-C",
        description="Start the service, the Telegram emulator and the sandbox provider on the "
        "demo's defaults and keep them running; prints one URL: a chat page where "
        "you play the owner, buyers and strangers, pay, and move the clock.",
    )
    p.add_argument(
        "--port", type=int, default=8089, help="port of the page and the emulator (default 8089)"
    )
    p.set_defaults(handler=_playground)


def _add_db(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _group(commands, "db", "database schema")
    up = sub.add_parser(
        "upgrade",
        help="apply migrations up to the newest",
        description="Bring the database of [database] url to the newest "
        "schema (creates a SQLite file if there is none).",
    )
    up.add_argument(
        "--config", help=CONFIG_HELP + " (default: [database] defaults and the environment)"
    )
    up.set_defaults(handler=_db_upgrade)


def _add_config(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _group(commands, "config", "configuration helpers")
    chk = sub.add_parser(
        "check",
        help="validate a config file and say what is offered",
        description="Validate the config as `gatepass run` would and name the payment "
        "providers offered. Exit 0: OK; 2: a problem, named in one line.",
    )
    chk.add_argument("--config", required=True, help=CONFIG_HELP)
    chk.add_argument(
        "--online",
        action="store_true",
        help="also prove the outside: the database answers and is migrated, "
        "Telegram answers getMe, each provider accepts its key, Redis "
        "answers PING, the WeChat puppet service takes its token (one line per check)",
    )
    chk.set_defaults(handler=_config_check)


def _add_members(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _group(commands, "members", "membership helpers")
    imp = sub.add_parser(
        "import",
        help="grant access to members who paid elsewhere, from a CSV file",
        description="CSV with a header: telegram_id,username,group,expires_at (expires_at: "
        "ISO date or date-time, blank = lifetime). Exit 0: all rows imported; "
        "1: some rows were bad (the others are kept); 2: config or file error.",
    )
    imp.add_argument("file", help="the CSV file (UTF-8)")
    imp.add_argument("--config", required=True, help=CONFIG_HELP + " (for [database])")
    imp.add_argument("--group", help="group number or chat id for rows with no group")
    imp.set_defaults(handler=_members_import)


def _add_webhooks(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _group(commands, "webhooks", "stored provider webhooks")
    replay = sub.add_parser(
        "replay",
        help="run a stored webhook again through the same path (idempotent)",
        description="Runs the body kept for this event through the same ingest path. An "
        "event processed without error is left alone; one that failed or was "
        "stored unapplied is applied now. Exit 0: applied or nothing to do; 2: "
        "unknown event, no body kept, or it still fails.",
    )
    replay.add_argument("provider", help="provider name, e.g. stripe")
    replay.add_argument("event_id", help="the provider's event id (webhook_event.event_id)")
    replay.add_argument("--config", required=True, help=CONFIG_HELP + " (database and provider)")
    replay.set_defaults(handler=_webhooks_replay)


COMMANDS: Sequence[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = (
    _add_run,
    _add_demo,
    _add_playground,
    _add_wechat,
    _add_db,
    _add_config,
    _add_members,
    _add_webhooks,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gatepass", description="Sell access to chat groups.")
    p.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {_version()}",
        help="print the version and exit",
    )
    p.add_argument(
        "--debug", action="store_true", help="on a config or start-up error, show the traceback too"
    )
    commands = p.add_subparsers(title="commands", metavar="COMMAND")
    p.set_defaults(handler=_choose(p, commands))
    for add in COMMANDS:
        add(commands)
    return p


# -- handlers ------------------------------------------------------------------------------


def _settings(path: str | None, *, production: bool = False) -> Settings:
    """The config, with the local checks every command needs before touching anything."""
    settings = load_settings(path)
    if production:
        check_production(settings)
    check_sqlite_folder(settings.database.url)
    return settings


def _one_line_db_errors(
    url: str,
) -> Callable[[Callable[..., Coroutine[Any, Any, T]]], Callable[..., Coroutine[Any, Any, T]]]:
    """Turn the database errors of a command's `_run` into StartupError (one line)."""

    def wrap(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def run(*args: Any) -> T:
            with failing_as(functools.partial(database_problem, url)):
                return await fn(*args)

        return run

    return wrap


def _run(args: argparse.Namespace) -> int:
    from gatepass.service import Service

    settings = _settings(args.config, production=True)
    # The service applies pending migrations as it starts; `db upgrade` is where to watch
    # them. Here Alembic's INFO lines would only bury what matters.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    service = Service(settings)
    asyncio.run(service.run_forever())
    return 0


def _wechat(args: argparse.Namespace) -> int:
    from gatepass.wechat import MISSING, run_wechat

    settings = _settings(args.config, production=True)
    if settings.wechat is None:
        raise ConfigError(MISSING)

    with failing_as(functools.partial(database_problem, settings.database.url)):
        asyncio.run(run_wechat(settings))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gatepass.demo import run_demo

    return asyncio.run(run_demo(quiet=args.quiet))


def _playground(args: argparse.Namespace) -> int:
    from gatepass.playground import run_playground

    return run_playground(port=args.port)


def _db_upgrade(args: argparse.Namespace) -> int:
    from storage.db import Database
    from storage.migrate import upgrade

    settings = _settings(args.config)
    url = settings.database.url

    @_one_line_db_errors(url)
    async def _up() -> None:
        db = Database(url)
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(_up())
    print(f"database is at the newest schema: {url.split('@')[-1]}")
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from gatepass.providers import build_providers

    settings = _settings(args.config, production=True)
    if settings.telegram is None:
        raise ConfigError("telegram.token: is required (the [telegram] section is missing)")
    names = ", ".join(build_providers(settings)) or "none"
    print(f"config OK; payment providers offered: {names}", flush=True)
    if settings.wechat is not None:
        print(f"wechat: puppet service at {settings.wechat.endpoint}", flush=True)
    if not args.online:
        return 0
    from gatepass.online import run_checks

    checks = asyncio.run(run_checks(settings))
    for c in checks:
        # Passed checks on stdout, failed ones on stderr, each one line in a fixed order.
        print(
            f"ok: {c.line}" if c.ok else f"gatepass: {c.line}",
            file=sys.stdout if c.ok else sys.stderr,
            flush=True,
        )
    return 0 if all(c.ok for c in checks) else 2


def _webhooks_replay(args: argparse.Namespace) -> int:
    from billing.replay import ReplayResult, ReplayStatus, replay_event
    from gatepass.providers import build_providers
    from storage.clock import SystemClock
    from storage.db import Database

    settings = _settings(args.config)
    providers = build_providers(settings)
    bot = None
    if args.provider == "stars" and settings.telegram is not None and settings.telegram.stars:
        # Stars messages the bot kept unapplied (bot/handlers/stars.py); reading them needs
        # no Bot API call, but the provider is built as the service builds it.
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession
        from aiogram.client.telegram import TelegramAPIServer

        from gatepass.providers import telegram_providers

        api = TelegramAPIServer.from_base(settings.telegram.api_server.rstrip("/"))
        bot = Bot(settings.telegram.token.get_secret_value(), session=AiohttpSession(api=api))
        providers.update(telegram_providers(bot))
    provider = providers.get(args.provider)
    if provider is None:
        print(
            f"gatepass: no provider '{args.provider}' is configured "
            f"(configured: {', '.join(providers) or 'none'})",
            file=sys.stderr,
        )
        return 2

    @_one_line_db_errors(settings.database.url)
    async def _replay() -> ReplayResult:
        db = Database(settings.database.url)
        try:
            return await replay_event(db, provider, args.event_id, SystemClock().now())
        finally:
            for p in providers.values():
                await p.close()
            if bot is not None:
                await bot.session.close()
            await db.dispose()

    result = asyncio.run(_replay())
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
    from membership.importer import ImportFileError, ImportReport, import_members, read_rows
    from storage.clock import SystemClock
    from storage.db import Database

    settings = _settings(args.config)
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

    @_one_line_db_errors(settings.database.url)
    async def _import() -> ImportReport | str:
        from membership.importer import find_group

        db = Database(settings.database.url)
        try:
            if args.group:
                async with db.session() as s:
                    if await find_group(s, "telegram", args.group) is None:
                        return f"--group {args.group}: there is no such active group"
            report = ImportReport(total=len(bad), bad=list(bad))
            return await import_members(db, rows, now, on_progress=TextProgress(), report=report)
        finally:
            await db.dispose()

    result = asyncio.run(_import())
    if isinstance(result, str):
        print(f"gatepass: {result}", file=sys.stderr)
        return 2
    for b in result.bad:
        print(f"line {b.line}: {b.reason}")
    print(
        f"{result.total} rows: {result.granted} granted, {result.extended} extended, "
        f"{result.unchanged} unchanged, {len(result.bad)} bad"
    )
    return 1 if result.bad else 0


# -- entry point ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    # The demo prints its own transcript and config check its own lines: only warnings
    # interleave with them.
    level = logging.WARNING if handler in (_demo, _playground, _config_check) else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic lists its plugins at INFO when imported: noise before any command's output.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    try:
        return handler(args)
    except (ConfigError, StartupError) as e:
        if args.debug:
            traceback.print_exception(e)
        what = "config error: " if isinstance(e, ConfigError) else ""
        print(f"gatepass: {what}{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
