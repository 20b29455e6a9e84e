"""Store round trips per web-chat prompt: a small counting harness (not part of `make bench`).

Runs botline in this process on SQLite with the fake LLM, opens one chat session, then sends prompts and
counts, per prompt: the Store's jobs on aiosqlite's thread, the hops there and back that carried them
(what costs: one prompt at a time, each job is its own hop; under load a hop carries a batch), the
SQL statements SQLite ran (its trace callback, BEGIN and COMMIT included), and the commits. Usage:

    PYTHONPATH=src .venv/bin/python -m bench.store_trips [--prompts 50] [--stream]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import aiosqlite

from botline.store import sqlite_base
from tests.emulators.fake_llm import FakeLLM
from tests.support.server import make_settings, running_server
from tests.support.webchat import create_client, open_session, prompt, public

counts: collections.Counter[str] = collections.Counter()


def _count_statements() -> None:
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(lambda sql: counts.update(["statements", "sql: " + " ".join(sql.split()[:2])]))
        return conn

    sqlite3.connect = traced  # type: ignore[assignment]
    execute = aiosqlite.Connection._execute

    def direct(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        counts["hops"] += 1
        counts["jobs"] += 1
        return execute(self, fn, *args, **kwargs)

    aiosqlite.Connection._execute = direct  # type: ignore[method-assign]
    run, send = sqlite_base._Batcher.run, sqlite_base._Batcher._send

    def job(self: sqlite_base._Batcher, work: Any) -> Any:
        counts["jobs"] += 1
        return run(self, work)

    def hop(self: sqlite_base._Batcher) -> None:
        counts["hops"] += 1
        send(self)

    sqlite_base._Batcher.run = job  # type: ignore[method-assign]
    sqlite_base._Batcher._send = hop  # type: ignore[method-assign]


async def measure(prompts: int, stream: bool) -> dict[str, float]:
    _count_statements()
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(f"sqlite:///{Path(tmp) / 'botline.db'}", logging={"level": "WARNING"})
        async with FakeLLM() as fake, running_server(settings) as server:
            session = await open_session(server, await create_client(server, fake))
            path = public(session["accessKey"], "/prompt" + ("?stream=true" if stream else ""))
            await server.call("POST", path, json=prompt("warm up"))
            await asyncio.sleep(0.2)  # lets the usage writer's first flush pass
            counts.clear()
            for n in range(prompts):
                status, _ = await server.call("POST", path, json=prompt(f"question {n}"))
                assert status == 200
            snapshot = dict(counts)
    return {key: value / prompts for key, value in sorted(snapshot.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    for key, value in asyncio.run(measure(args.prompts, args.stream)).items():
        print(f"{value:8.2f}  {key}")


if __name__ == "__main__":
    main()
