"""Instructions per web chat prompt, counted by callgrind: a figure a busy or slower machine cannot move.

Prompts per second and CPU per prompt (bench/webchat.py) move with the machine: the same commit
measured 1,150 and ~600 SQLite prompts/s on two days here. Instructions executed do not: `botline
serve` runs under `valgrind --tool=callgrind` with instrumentation off while it starts (a near-native
pace), is set up through the API, warmed up, and then `callgrind_control` zeroes the counts, the
prompts run, and a dump gives the instructions of exactly those prompts. The fake LLM, the load
generator and Redis run outside valgrind, so only botline's own work is counted (its threads included:
SQLite's). Same setup as bench/webchat.py (a client with no limits, PROMPTS_PER_SESSION prompts per
session, non-streaming), side by side with another tree (`--baseline`).

What it does not show: time spent waiting (syscalls count as the instructions around them, not their
kernel time), and instruction costs differ (a cache miss is one instruction). So it tells which of two
trees does less work per prompt, not how many prompts per second either serves.

    .venv/bin/python -m bench.instructions [--store sqlite|redis ...] [--baseline /tmp/old/src]
        [--prompts 200] [--concurrency 1 --concurrency 50] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp

from bench import api, servers
from bench.webchat import PROMPTS_PER_SESSION, SessionPool, prompt_batch

WARMUP = 40
"""Prompts run instrumented before the counts are zeroed (valgrind translates code on first use)."""
START_SECONDS = 180.0
"""botline under valgrind, uninstrumented, starts in tens of seconds rather than one or two."""
TOTALS = re.compile(r"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


def _callgrind_control(*args: str) -> str:
    return subprocess.run(["callgrind_control", *args], check=True, capture_output=True, text=True,
                          timeout=120).stdout


def _dumped_instructions(out_prefix: Path) -> int:
    """The instructions in the newest dump (`callgrind_control -d` writes `<out>.<n>`)."""
    dumps = sorted(out_prefix.parent.glob(out_prefix.name + ".*"), key=lambda path: path.stat().st_mtime)
    found = TOTALS.search(dumps[-1].read_text(errors="replace"))
    if found is None:
        raise RuntimeError(f"no totals in {dumps[-1]}")
    return int(found.group(1))


async def _count(base: str, pid: int, out_prefix: Path, prompts: int, concurrency: int) -> float:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        client_id = await api.create_client(http, base)
        needed = (WARMUP + prompts) // PROMPTS_PER_SESSION + 2 * concurrency + 2
        keys = [s["accessKey"] for s in await api.create_sessions(http, base, client_id, needed)]
        pool = SessionPool(keys)
        _callgrind_control("-i", "on", str(pid))
        warm = await prompt_batch(http, base, pool, pid, n=WARMUP, concurrency=min(concurrency, WARMUP))
        _callgrind_control("-z", str(pid))
        measured = await prompt_batch(http, base, pool, pid, n=prompts, concurrency=concurrency)
        _callgrind_control("-d", str(pid))
        if warm.errors or measured.errors:
            raise RuntimeError(f"prompts failed: {warm.first_error or measured.first_error}")
    return _dumped_instructions(out_prefix) / prompts


def _keep_dump(out_prefix: Path, name: str) -> None:
    """Copies the newest dump to bench/results, for `callgrind_annotate --inclusive=yes <file>`."""
    newest = max(out_prefix.parent.glob(out_prefix.name + ".*"), key=lambda path: path.stat().st_mtime)
    servers.RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(newest, servers.RESULTS / f"callgrind-{time.strftime('%Y%m%d-%H%M%S')}-{name}.out")


def measure(store: str, source: Path | None, prompts: int, concurrency: int, keep: str | None = None) -> float:
    """Instructions per prompt of botline (from `source`, else this tree) on `store`; `keep`: save the
    dump under this name."""
    with ExitStack() as stack:
        work = stack.enter_context(servers.workdir("instructions"))
        fake = stack.enter_context(servers.fake_llm(work))
        overrides = stack.enter_context(servers.redis_storage("instr")) if store == "redis" else {}
        out_prefix = work / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_prefix}",
                   sys.executable, str(servers.BOTLINE)]
        port = servers.free_port()
        config = servers.botline_config(work, port, fake, "botline", overrides)
        env = {"PYTHONPATH": str(source)} if source is not None else {}
        server = stack.enter_context(servers.spawn("botline", [*command, "serve", "--config", str(config)], port,
                                                   work, env))
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                servers.wait_http(server, "/healthz")
                break
            except RuntimeError:
                if server.process.poll() is not None or time.monotonic() > deadline:
                    raise
        per_prompt = asyncio.run(_count(server.base_url, server.pid, out_prefix, prompts, concurrency))
        if keep is not None:
            _keep_dump(out_prefix, keep)
        return per_prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "redis"), action="append")
    parser.add_argument("--baseline", type=Path, help="a `src` folder of the tree to compare with")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, action="append")
    parser.add_argument("--keep", action="store_true", help="save each callgrind dump to bench/results")
    args = parser.parse_args()
    if shutil.which("callgrind_control") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    trees: list[tuple[str, Path | None]] = [("now", None)]
    if args.baseline is not None:
        trees.append(("baseline", args.baseline))
    rows: list[dict[str, Any]] = []
    for store in args.store or ["sqlite", "redis"]:
        if store == "redis" and not servers.redis_available():
            print("redis: not reachable, skipped")
            continue
        for concurrency in args.concurrency or [1, 50]:
            for name, source in trees:
                keep = f"{store}-c{concurrency}-{name}" if args.keep else None
                per_prompt = measure(store, source, args.prompts, concurrency, keep)
                rows.append({"store": store, "clients": concurrency, "tree": name, "instructions": per_prompt})
                print(f"  {store:6} c={concurrency:<3} {name:9} {per_prompt / 1e6:8.3f} M instructions per prompt",
                      flush=True)
    print("\n| store | clients | tree | instructions per prompt |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['store']} | {row['clients']} | {row['tree']} | {row['instructions'] / 1e6:.3f} M |")
    servers.save_result("instructions", {"prompts": args.prompts, "rows": rows})


if __name__ == "__main__":
    main()
