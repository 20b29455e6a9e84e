"""Batch workflows (issue 13): items/s through one `botline serve` process.

1. Zero latency: an upstream that answers at once; the queue, the Store and the turn pipeline are
   the cost. Goal: >= 500 items/s on one process, at any job size.
2. One second of upstream latency with `batch.max_concurrent_*` = 100: the ideal is 100 items/s
   (concurrency / latency); goal: within 10 % of it.

Each run: a fresh botline on SQLite, a workflow on the gateway `bench`, a job, N items imported in one
JSONL upload while the job is paused, then resumed. The time is the job's own log: from its
`Resumed` event to its `Finished` event (both stamped by the server), so how often the bench looks
(every POLL s) neither adds to it nor costs the server much.

`--baseline DIR` (a `src` folder, e.g. `git archive <commit> src | tar -x -C DIR`) runs every plan
on that build too, right after the current one, in the same run.

    .venv/bin/python -m bench.batch [--quick] [--baseline DIR] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import servers
from bench.webchat import load_average, uvloop_run

POLL = 0.25
CONCURRENCY = 100
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


@dataclass
class Run:
    name: str
    items: int
    latency_seconds: float
    concurrency: int
    build: str = "current"
    seconds: float = 0.0
    items_per_second: float = 0.0
    ideal_items_per_second: float | None = None
    finished: int = 0
    load_average: float = 0.0


@dataclass
class Result:
    runs: list[Run] = field(default_factory=list)
    seconds: float = 0.0


def _moment(updates: list[dict[str, Any]], kind: str) -> datetime:
    return next(datetime.fromisoformat(u["moment"]) for u in reversed(updates) if u["eventType"] == kind)


async def _job(base: str, items: int) -> tuple[float, int]:
    """Seconds from the job's Resumed event (imported while paused) to its Finished event, and how many
    items finished."""
    headers = {"Authorization": f"Bearer {servers.BENCH_KEY}"}
    async with aiohttp.ClientSession(base, headers=headers) as http:
        async with http.post("/api/v1/batch/workflows", json={
                "modelName": servers.GATEWAY_SLUG, "maxRetries": 0,
                "options": {"instruction": "Say ok.", "resultSchema": SCHEMA}}) as response:
            workflow = (await response.json())["id"]
        async with http.post(f"/api/v1/batch/workflows/{workflow}/jobs") as response:
            job = (await response.json())["id"]
        path = f"/api/v1/batch/workflows/{workflow}/jobs/{job}"
        async with http.patch(path, json={"state": "pause"}) as response:
            assert response.status == 200
        form = aiohttp.FormData()
        lines = b"\n".join(orjson.dumps({"n": n}) for n in range(items))
        form.add_field("items", lines, filename="items.jsonl")
        async with http.post(path + "/items", data=form) as response:
            assert (await response.json())["inserted"] == items
        async with http.patch(path, json={"state": "resume"}) as response:
            assert response.status == 200
        while True:
            await asyncio.sleep(POLL)
            async with http.get(path) as response:
                view = await response.json()
            if view["job"]["state"] == "Finished":
                updates = view["job"]["updates"]
                seconds = (_moment(updates, "Finished") - _moment(updates, "Resumed")).total_seconds()
                return seconds, int(view["summary"]["finished"])


def _run_one(run: Run, source: Path | None) -> Run:
    overrides = {"batch": {"poll_seconds": 1.0, "max_concurrent_items": run.concurrency,
                           "max_concurrent_per_job": run.concurrency, "max_concurrent_per_account": run.concurrency},
                 "llm": {"max_retries": 0}}
    with servers.workdir("batch") as workdir, servers.module_server(
            "batch_llm", "bench.batch_llm", ["--latency", str(run.latency_seconds)], workdir,
            ready_path="/v1/models") as upstream, servers.botline(workdir, upstream, overrides=overrides,
                                                                 source=source) as botline:
        seconds, finished = uvloop_run(_job(botline.base_url, run.items))
    run.seconds = round(seconds, 2)
    run.items_per_second = round(run.items / seconds, 1)
    run.finished = finished
    run.load_average = load_average()
    if run.latency_seconds:
        run.ideal_items_per_second = run.concurrency / run.latency_seconds
    return run


def plans(quick: bool) -> list[Run]:
    return [Run("zero latency", 1000, 0.0, 32), Run("zero latency", 1000 if quick else 5000, 0.0, 32),
            Run("1 s latency", 300 if quick else 1000, 1.0, CONCURRENCY)][1 if quick else 0:]


def run(*, quick: bool = False, log: Any = print, baseline: Path | None = None, rounds: int = 1) -> Result:
    """`rounds` times: every plan on the current build, then (with `baseline`) on the baseline build,
    one right after the other (the machine's load drifts; alternating keeps the pairs comparable)."""
    result = Result()
    began = time.perf_counter()
    for _ in range(rounds):
        for plan in plans(quick):
            for build, source in [("current", None), *([("baseline", baseline)] if baseline else [])]:
                one = Run(plan.name, plan.items, plan.latency_seconds, plan.concurrency, build=build)
                log(f"batch: {one.name}, {one.items} items, concurrency {one.concurrency}, {build} build")
                result.runs.append(_run_one(one, source))
    result.seconds = round(time.perf_counter() - began, 1)
    return result


def table(result: Result) -> str:
    rows = ["| run | build | items | concurrency | seconds | items/s | ideal | of ideal | load average |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in result.runs:
        ideal = f"{r.ideal_items_per_second:.0f}" if r.ideal_items_per_second else "—"
        share = f"{100 * r.items_per_second / r.ideal_items_per_second:.0f} %" if r.ideal_items_per_second else "—"
        rows.append(f"| {r.name} | {r.build} | {r.items} | {r.concurrency} | {r.seconds} | {r.items_per_second} "
                    f"| {ideal} | {share} | {r.load_average} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--baseline", type=Path, help="also run every plan on this src folder (an older commit's)")
    parser.add_argument("--rounds", type=int, default=1, help="run every plan (and build) this many times")
    args = parser.parse_args()
    result = run(quick=args.quick, baseline=args.baseline, rounds=args.rounds)
    print(table(result))
    servers.save_result("batch", asdict(result))


if __name__ == "__main__":
    main()
