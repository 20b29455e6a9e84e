"""What-if runs: start `botline` with experimental monkeypatches, to measure a lever before building it.

Not product code and not used by `make bench`. It patches botline internals at start-up, so it may
need updating when src/ changes. Usage (the proxy benchmark starts botline through it):

    BENCH_LEVERS=no-ping,count-db \\
    BENCH_BOTLINE_CMD="$PWD/.venv/bin/python -m bench.levers" \\
    .venv/bin/python -m bench.proxy_latency --no-profile

Levers (comma-separated in $BENCH_LEVERS; those that proved themselves are now product code:
sdk-raw-post, gateway-cache, llm-pool-unlimited, redis-blocking-pool, inbound-turn-limit,
sqlite-no-lease, and no-sdk with coalesce-deltas, which became the lean model client: `llm.client: lean`;
`BOTLINE_LLM__CLIENT=sdk` measures the SDK client instead):
- sdk-client: the turn's model call through the openai SDK client (`llm.client: sdk`) instead of the
  lean one, to measure what the lean client saves in one run.
- no-ping: no per-stream keep-alive ping task (as if every client sent `Sse-Stream-Options: no-ping`).
- log-info: logging at INFO (the level config.example.yaml ships) instead of the benchmark's WARNING,
  i.e. one JSON access-log line per request on stderr (here: the server's log file).
- count-db: counts the jobs botline sends to aiosqlite's thread (each a round trip; a write and its commit
  are one job) and the SQL statements started from the event loop (and the Redis commands and pipelines),
  written as JSON to $BENCH_COUNT_FILE at exit: the store round trips per request.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import botline.api.openai_compat as compat


def no_ping() -> None:
    compat.loop_pinger = lambda: None  # type: ignore[attr-defined,assignment,return-value]


def log_info() -> None:
    import botline.logs as logs

    configure = logs.configure_logging
    logs.configure_logging = lambda level: configure("INFO")


def count_db() -> None:
    import atexit
    import collections
    import json

    import aiosqlite

    counts: collections.Counter[str] = collections.Counter()

    def wrap(cls: Any, name: str, key: str) -> None:
        original = getattr(cls, name)

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            if key == "sqlite execute" and args:
                counts["sql: " + " ".join(str(args[0]).split()[:3])] += 1
            return original(self, *args, **kwargs)

        setattr(cls, name, counted)

    from botline.store import sqlite_base
    wrap(sqlite_base._Batcher, "run", "sqlite job")
    wrap(sqlite_base._Batcher, "_send", "sqlite hop")
    wrap(aiosqlite.Connection, "_execute", "sqlite job outside the batches")
    wrap(aiosqlite.Connection, "execute", "sqlite execute")
    wrap(aiosqlite.Connection, "execute_fetchall", "sqlite execute")
    wrap(aiosqlite.Connection, "commit", "sqlite commit")
    try:
        import redis.asyncio.client as rclient
        wrap(rclient.Redis, "execute_command", "redis command")
        wrap(rclient.Pipeline, "execute", "redis pipeline")
    except ImportError:  # pragma: no cover
        pass

    def dump() -> None:
        path = os.environ.get("BENCH_COUNT_FILE")
        if path:
            with open(path, "w") as out:
                json.dump(dict(counts.most_common()), out, indent=1)

    atexit.register(dump)


def sdk_client() -> None:
    """The openai SDK makes the model call (`llm.client: sdk`): the lean client's own lever, side by side."""
    os.environ["BOTLINE_LLM__CLIENT"] = "sdk"


LEVERS = {
    "sdk-client": sdk_client, "no-ping": no_ping,
    "log-info": log_info, "count-db": count_db,
}


def main() -> None:
    for name in filter(None, os.environ.get("BENCH_LEVERS", "").split(",")):
        if name not in LEVERS:
            raise SystemExit(f"unknown lever {name!r}; known: {', '.join(LEVERS)}")
        LEVERS[name]()
    from botline.cli import main as botline_main

    sys.exit(botline_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
