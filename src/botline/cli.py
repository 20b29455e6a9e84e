"""The `botline` command: serve, config check, keys create, accounts create."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Awaitable, Callable

from botline.config import ConfigError, Settings, load_settings, resolve_config_path
from botline.store.base import Store, StoreError

EXIT_CONFIG = 2
EXIT_FAILURE = 1
GC_FIRST_THRESHOLD = 50_000
HANDLER_WIND_DOWN_SECONDS = 3.0
"""After SIGTERM the app drains turns and open requests within server.shutdown_grace_seconds (app.py's
drain_turns); aiohttp then gives the handlers this long to write their last bytes before cancelling."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botline", description="Self-hostable chat-bot runtime.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--config", help="YAML config file (default: $BOTLINE_CONFIG or ./config.yaml)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate the configuration and exit")
    check.add_argument("--config")

    keys = commands.add_parser("keys", help="admin API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create_key = key_commands.add_parser("create", help="create an admin API key and print it once")
    create_key.add_argument("--label", required=True)
    create_key.add_argument("--config")

    accounts = commands.add_parser("accounts", help="tenant accounts")
    account_commands = accounts.add_subparsers(dest="accounts_command", required=True)
    create_account = account_commands.add_parser("create", help="create an account and print its first key once")
    create_account.add_argument("--name", required=True)
    create_account.add_argument("--admin", action="store_true")
    create_account.add_argument("--config")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    server = {"host": getattr(args, "host", None), "port": getattr(args, "port", None)}
    return load_settings(resolve_config_path(args.config), server=server)


def _serve(settings: Settings) -> None:
    from aiohttp import web

    from botline.app import build_app
    from botline.logs import configure_logging

    configure_logging(settings.logging.level)

    def announce(key: str) -> None:
        print(f"Admin API key (shown once; only its hash is stored): {key}", flush=True)

    def say_listening(_: str) -> None:
        """run_app calls this once the socket is listening."""
        _relax_garbage_collection()
        print(f"botline is serving on {settings.server.base_url} (storage: {_storage_kind(settings)})", flush=True)

    web.run_app(
        build_app(settings, announce_admin_key=announce), host=settings.server.host, port=settings.server.port,
        print=say_listening, access_log=None,
        shutdown_timeout=HANDLER_WIND_DOWN_SECONDS, handler_cancellation=True, loop=_event_loop(),
    )


def _relax_garbage_collection() -> None:
    """Fewer pauses of the cyclic garbage collector while serving (docs/decisions.md).

    With the default first threshold (700 allocations) a busy server runs a young collection every few
    requests and a full one often enough to stall the event loop for tens to hundreds of ms: measured
    as the webhook acknowledgement p99 on Redis (114-321 ms -> 33-49 ms). Reference counting still
    frees almost everything at once; only reference cycles wait longer. What exists at start-up
    (modules, the app) is frozen out of every later collection.
    """
    gc.freeze()
    gc.set_threshold(GC_FIRST_THRESHOLD, 10, 10)


def _event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _storage_kind(settings: Settings) -> str:
    return settings.storage.url.split(":", 1)[0]


async def _with_store(settings: Settings, action: Callable[[Store], Awaitable[str]]) -> str:
    from botline.store import open_store

    async with await open_store(settings.storage.url, redis_prefix=settings.storage.redis_prefix) as store:
        return await action(store)


def _create_admin_key(settings: Settings, label: str) -> str:
    from botline.accounts import admin_account, issue_key

    async def action(store: Store) -> str:
        admin = await admin_account(store)
        return (await issue_key(store, admin.id, label=label)).secret

    return asyncio.run(_with_store(settings, action))


def _create_account(settings: Settings, name: str, is_admin: bool) -> str:
    from botline.accounts import create_account

    async def action(store: Store) -> str:
        issued = await create_account(store, name=name, is_admin=is_admin)
        return f"account {issued.record.account_id}\nAPI key (shown once): {issued.secret}"

    return asyncio.run(_with_store(settings, action))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        if args.command == "serve":
            _serve(settings)
        elif args.command == "config":
            gateways = sum(1 for g in settings.gateways if g.complete)
            print(f"config OK: storage {_storage_kind(settings)}, {settings.server.base_url}, {gateways} gateway(s)")
        elif args.command == "keys":
            print(_create_admin_key(settings, args.label))
        elif args.command == "accounts":
            print(_create_account(settings, args.name, args.admin))
    except ConfigError as exc:
        print(f"botline: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (StoreError, ValueError, OSError) as exc:
        print(f"botline: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
