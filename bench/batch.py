"""Batch workflows (issue 13): items/s through one `botline serve` process.

1. Zero latency: an upstream that answers at once; the queue, the Store and the turn pipeline are
   the cost. Goal: >= 500 items/s on one process.
2. One second of upstream latency with `batch.max_concurrent_*` = 100: the ideal is 100 items/s
   (concurrency / latency); goal: within 10 % of it.

Each run: a workflow on the gateway `bench`, a job, N items imported in one JSONL upload; the clock
runs from the import's answer to the job view showing every item Finished (polled every POLL s).

    .venv/bin/python -m bench.batch [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson

from bench import servers
from bench.webchat import load_average, uvloop_run

POLL = 0.1
CONCURRENCY = 100
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


@dataclass
class Run:
    name: str
    items: int
    latency_seconds: float
    concurrency: int
    seconds: float = 0.0
    items_per_second: float = 0.0
    ideal_items_per_second: float | None = None
    finished: int = 0
    load_average: float = 0.0


@dataclass
class Result:
    runs: list[Run] = field(default_factory=list)
    seconds: float = 0.0


async def _job(base: str, items: int) -> Run | float:
    headers = {"Authorization": f"Bearer {servers.BENCH_KEY}"}
    async with aiohttp.ClientSession(base, headers=headers) as http:
        async with http.post("/api/v1/batch/workflows", json={
                "modelName": servers.GATEWAY_SLUG, "maxRetries": 0,
                "options": {"instruction": "Say ok.", "resultSchema": SCHEMA}}) as response:
            workflow = (await response.json())["id"]
        async with http.post(f"/api/v1/batch/workflows/{workflow}/jobs") as response:
            job = (await response.json())["id"]
        path = f"/api/v1/batch/workflows/{workflow}/jobs/{job}"
        form = aiohttp.FormData()
        lines = b"\n".join(orjson.dumps({"n": n}) for n in range(items))
        form.add_field("items", lines, filename="items.jsonl")
        async with http.post(path + "/items", data=form) as response:
            assert (await response.json())["inserted"] == items
        started = time.perf_counter()
        while True:
            async with http.get(path) as response:
                summary = (await response.json())["summary"]
            if summary["pending"] == 0 and summary["running"] == 0:
                return time.perf_counter() - started
            await asyncio.sleep(POLL)


def _run_one(run: Run) -> Run:
    overrides = {"batch": {"poll_seconds": 0.05, "max_concurrent_items": run.concurrency,
                           "max_concurrent_per_job": run.concurrency, "max_concurrent_per_account": run.concurrency},
                 "llm": {"max_retries": 0}}
    with servers.workdir("batch") as workdir, servers.module_server(
            "batch_llm", "bench.batch_llm", ["--latency", str(run.latency_seconds)], workdir,
            ready_path="/v1/models") as upstream, servers.botline(workdir, upstream, overrides=overrides) as botline:
        seconds = uvloop_run(_job(botline.base_url, run.items))
    run.seconds = round(float(seconds), 2)
    run.items_per_second = round(run.items / float(seconds), 1)
    run.finished = run.items
    run.load_average = load_average()
    if run.latency_seconds:
        run.ideal_items_per_second = run.concurrency / run.latency_seconds
    return run


def run(*, quick: bool = False, log: Any = print) -> Result:
    started = time.perf_counter()
    result = Result()
    plans = [Run("zero latency", 1000 if quick else 5000, 0.0, 32),
             Run("1 s latency", 300 if quick else 1000, 1.0, CONCURRENCY)]
    for plan in plans:
        log(f"batch: {plan.name}, {plan.items} items, concurrency {plan.concurrency}")
        result.runs.append(_run_one(plan))
    result.seconds = round(time.perf_counter() - started, 1)
    return result


def table(result: Result) -> str:
    rows = ["| run | items | concurrency | seconds | items/s | ideal | of ideal |", "|---|---|---|---|---|---|---|"]
    for r in result.runs:
        ideal = f"{r.ideal_items_per_second:.0f}" if r.ideal_items_per_second else "—"
        share = f"{100 * r.items_per_second / r.ideal_items_per_second:.0f} %" if r.ideal_items_per_second else "—"
        rows.append(f"| {r.name} | {r.items} | {r.concurrency} | {r.seconds} | {r.items_per_second} | {ideal} "
                    f"| {share} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = run(quick=args.quick)
    print(table(result))
    servers.save_result("batch", asdict(result))


if __name__ == "__main__":
    main()
