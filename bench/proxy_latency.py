"""Added latency of botline's POST /v1/chat/completions over calling the fake upstream directly.

OS processes on 127.0.0.1: the zero-latency fake LLM, `botline serve` (SQLite store in a temp dir,
one gateway `bench` pointing at the fake), optionally more contenders (botline with what-if levers
from bench.levers; later LiteLLM), and this process as the load generator (aiohttp, one keep-alive
session per concurrency level). For every mode (JSON answer, `stream: true`) and concurrency (1, 50)
it warms every target up, then runs rounds in which every target gets `n` requests, the order
rotating every round, so all of them share the machine's drift. Added = contender - direct, at p50
and p99 of the pooled samples; requests/s is the median over rounds of n / round wall time.

Afterwards py-spy samples the (first) botline process under 50-client load (see bench.profile).

    .venv/bin/python -m bench.proxy_latency [--quick] [--no-profile] [--mode json|stream]
                                             [--levers LEVER,LEVER ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import loadgen, profile, servers
from bench.loadgen import Batch, Target, percentile

PROMPT = "Hello! Can you tell me a short fact about the sea?"
MODES = ("json", "stream")
DIRECT = "direct"
BOTLINE = "botline"
NOISY_LOAD = 3.0
"""A 1-minute load average above this (at start or end) means other work competed for the CPUs."""


@dataclass(frozen=True)
class Plan:
    rounds: int
    per_round: dict[int, int]
    """Requests per target per round, by concurrency."""
    warmup: dict[int, int]
    profile_seconds: float
    concurrencies: tuple[int, ...] = (1, 50)


FULL = Plan(rounds=5, per_round={1: 400, 50: 2000}, warmup={1: 200, 50: 1000}, profile_seconds=10)
QUICK = Plan(rounds=2, per_round={1: 100, 50: 400}, warmup={1: 50, 50: 200}, profile_seconds=4)


@dataclass
class Cell:
    """One (mode, concurrency, contender) measurement: latencies in milliseconds."""

    mode: str
    concurrency: int
    contender: str
    requests: int
    direct_p50: float
    direct_p99: float
    p50: float
    p99: float
    added_p50: float
    added_p99: float
    added_p50_rounds: list[float]
    """Added p50 within each round (their spread shows the noise)."""
    direct_rps: float
    rps: float
    direct_ttfb_p50: float | None = None
    ttfb_p50: float | None = None
    added_ttfb_p50: float | None = None
    ttfb_p99: float | None = None
    errors: int = 0
    first_error: str | None = None


@dataclass
class Result:
    plan: dict[str, Any]
    contenders: dict[str, str | None] = field(default_factory=dict)
    """Contender name -> its bench.levers (None: the real botline)."""
    cells: list[Cell] = field(default_factory=list)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    load_average: dict[str, float] = field(default_factory=dict)
    """1-minute load average at start and end: other work on the machine skews every figure."""


def _target(name: str, server: servers.Server, model: str, stream: bool, key: str | None) -> Target:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        payload["stream"] = True
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return Target(name, f"{server.base_url}/v1/chat/completions", orjson.dumps(payload), headers, stream)


def _targets(fake: servers.Server, proxies: dict[str, servers.Server], stream: bool) -> list[Target]:
    return [
        _target(DIRECT, fake, servers.UPSTREAM_MODEL, stream, None),
        *(_target(name, proxy, servers.GATEWAY_SLUG, stream, servers.BENCH_KEY) for name, proxy in proxies.items()),
    ]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _pooled(batches: list[Batch], attribute: str) -> list[float]:
    return [x for b in batches for x in getattr(b, attribute)]


def _cell(mode: str, concurrency: int, contender: str, direct: list[Batch], through: list[Batch]) -> Cell:
    d_total, b_total = _pooled(direct, "total"), _pooled(through, "total")
    cell = Cell(
        mode=mode, concurrency=concurrency, contender=contender, requests=len(b_total),
        direct_p50=_ms(percentile(d_total, 0.5)), direct_p99=_ms(percentile(d_total, 0.99)),
        p50=_ms(percentile(b_total, 0.5)), p99=_ms(percentile(b_total, 0.99)),
        added_p50=_ms(percentile(b_total, 0.5) - percentile(d_total, 0.5)),
        added_p99=_ms(percentile(b_total, 0.99) - percentile(d_total, 0.99)),
        added_p50_rounds=[
            _ms(percentile(b.total, 0.5) - percentile(d.total, 0.5)) for d, b in zip(direct, through, strict=True)
        ],
        direct_rps=round(statistics.median(b.requests_per_second for b in direct), 1),
        rps=round(statistics.median(b.requests_per_second for b in through), 1),
        errors=sum(b.errors for b in through),
        first_error=next((b.first_error for b in direct + through if b.first_error), None),
    )
    if mode == "stream":
        d_first, b_first = _pooled(direct, "first_byte"), _pooled(through, "first_byte")
        cell.direct_ttfb_p50 = _ms(percentile(d_first, 0.5))
        cell.ttfb_p50 = _ms(percentile(b_first, 0.5))
        cell.added_ttfb_p50 = _ms(percentile(b_first, 0.5) - percentile(d_first, 0.5))
        cell.ttfb_p99 = _ms(percentile(b_first, 0.99))
    return cell


async def _measure(fake: servers.Server, proxies: dict[str, servers.Server], plan: Plan, log: Any,
                   modes: tuple[str, ...]) -> list[Cell]:
    cells: list[Cell] = []
    for mode in modes:
        targets = _targets(fake, proxies, stream=mode == "stream")
        for concurrency in plan.concurrencies:
            n = plan.per_round[concurrency]
            batches: dict[str, list[Batch]] = {t.name: [] for t in targets}
            async with loadgen.session(concurrency) as http:
                for target in targets:
                    await loadgen.run_batch(http, target, n=plan.warmup[concurrency], concurrency=concurrency)
                for round_number in range(plan.rounds):
                    shift = round_number % len(targets)
                    for target in targets[shift:] + targets[:shift]:
                        batch = await loadgen.run_batch(http, target, n=n, concurrency=concurrency)
                        batches[target.name].append(batch)
                        if batch.errors and batch.first_error:
                            log(f"  {target.name}: {batch.errors} errors, first: {batch.first_error}")
            for name in proxies:
                cell = _cell(mode, concurrency, name, batches[DIRECT], batches[name])
                log(f"  {mode:6} c={concurrency:<3} {name:<12} direct p50 {cell.direct_p50:7.3f} ms  p50 "
                    f"{cell.p50:7.3f} ms  added p50 {cell.added_p50:7.3f} ms  p99 {cell.added_p99:7.3f} ms  "
                    f"{cell.rps:7.1f} req/s  errors {cell.errors}")
                cells.append(cell)
    return cells


async def _profile(proxy: servers.Server, fake: servers.Server, plan: Plan, out_dir: Path, stamp: str,
                   log: Any, modes: tuple[str, ...]) -> list[dict[str, Any]]:
    summaries: list[dict[str, Any]] = []
    for mode in modes:
        target = _target(BOTLINE, proxy, servers.GATEWAY_SLUG, mode == "stream", servers.BENCH_KEY)
        raw_path = out_dir / f"profile-{stamp}-{mode}-c50.txt"
        async with loadgen.session(50) as http:
            recorder = await profile.start(proxy.pid, raw_path, seconds=plan.profile_seconds)
            if recorder is None:
                log("  py-spy not available; profile skipped (pip install py-spy into the venv)")
                return summaries
            batch = await loadgen.run_for(http, target, seconds=plan.profile_seconds + 1.5, concurrency=50)
            ok = await profile.finish(recorder)
        if not ok or not raw_path.exists():
            log(f"  py-spy failed for {mode}; see {raw_path}.log")
            continue
        summary = profile.summarize(raw_path.read_text(), seconds=plan.profile_seconds,
                                    requests=int(batch.requests_per_second * plan.profile_seconds))
        summary.update(mode=mode, concurrency=50, raw=str(raw_path.relative_to(servers.ROOT)),
                       requests_per_second_while_sampled=round(batch.requests_per_second, 1))
        summaries.append(summary)
        log(f"  profiled {mode}: {summary['samples']} main-thread samples -> {raw_path.name}")
    return summaries


def run(*, quick: bool = False, with_profile: bool = True, out_dir: Path, log: Any = print,
        modes: tuple[str, ...] = MODES, levers: tuple[str, ...] = ()) -> Result:
    """Measures botline (plus one contender per entry of `levers`) against the fake upstream."""
    plan = QUICK if quick else FULL
    contenders: dict[str, str | None] = {BOTLINE: None, **{f"what-if {i + 1}": lv for i, lv in enumerate(levers)}}
    result = Result(plan=asdict(plan), contenders=contenders)
    result.load_average["start"] = os.getloadavg()[0]
    started = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        import uvloop
        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(servers.workdir("botline-bench-"))
        fake = stack.enter_context(servers.fake_llm(tmp))
        proxies = {
            name: stack.enter_context(servers.botline(tmp, fake, name=name.replace(" ", "-"), levers=lv))
            for name, lv in contenders.items()
        }
        log(f"proxy latency: fake LLM pid {fake.pid} :{fake.port}; "
            + "; ".join(f"{name} pid {p.pid} :{p.port}" + (f" levers {contenders[name]}" if contenders[name] else "")
                        for name, p in proxies.items()))
        result.cells = runner(_measure(fake, proxies, plan, log, modes))
        if with_profile:
            result.profiles = runner(_profile(proxies[BOTLINE], fake, plan, out_dir, stamp, log, modes))
    result.seconds = round(time.perf_counter() - started, 1)
    result.load_average["end"] = os.getloadavg()[0]
    return result


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(result: Result) -> str:
    lines = [
        "| mode | clients | contender | direct p50 | p50 | **added p50** | added p50 per round | direct p99 | "
        "p99 | **added p99** | direct req/s | **req/s** | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result.cells:
        rounds = " / ".join(f"{x:.2f}" for x in c.added_p50_rounds)
        lines.append(
            f"| {c.mode} | {c.concurrency} | {c.contender} | {_fmt(c.direct_p50)} | {_fmt(c.p50)} | "
            f"**{_fmt(c.added_p50)}** | {rounds} | {_fmt(c.direct_p99)} | {_fmt(c.p99)} | **{_fmt(c.added_p99)}** | "
            f"{c.direct_rps:.0f} | **{c.rps:.0f}** | {c.errors} |"
        )
    streams = [c for c in result.cells if c.mode == "stream"]
    if streams:
        lines += ["", "| stream: first chunk | clients | contender | direct p50 | p50 | added p50 | p99 |",
                  "|---|---|---|---|---|---|---|"]
        for c in streams:
            lines.append(f"| time to first byte | {c.concurrency} | {c.contender} | {_fmt(c.direct_ttfb_p50)} | "
                         f"{_fmt(c.ttfb_p50)} | {_fmt(c.added_ttfb_p50)} | {_fmt(c.ttfb_p99)} |")
    lines.append("")
    lines.append("Latencies in ms. Added = contender - direct at the same percentile of the pooled samples.")
    load = result.load_average
    if load:
        lines.append(f"1-minute load average: {load.get('start', 0):.2f} at start, {load.get('end', 0):.2f} at end "
                     f"({os.cpu_count()} CPUs; the benchmark itself keeps about 2 busy at 50 clients).")
        if max(load.values()) > NOISY_LOAD:
            lines.append("WARNING: the machine was busy with other work; treat these figures as noisy.")
    what_ifs = {name: lv for name, lv in result.contenders.items() if lv}
    for name, lv in what_ifs.items():
        lines.append(f"{name} = botline with bench.levers {lv}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and requests (a smoke run)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument("--mode", choices=MODES, action="append", help="only this mode (repeatable)")
    parser.add_argument("--levers", action="append", default=[],
                        help="add a what-if contender: botline with these bench.levers (repeatable)")
    args = parser.parse_args()
    out_dir = servers.ROOT / "bench" / "results"
    result = run(quick=args.quick, with_profile=not args.no_profile, out_dir=out_dir,
                 modes=tuple(args.mode or MODES), levers=tuple(args.levers))
    print(table(result))
    for summary in result.profiles:
        print(profile.report(summary))
    path = out_dir / f"proxy_latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(asdict(result), indent=2))
    print(f"raw results: {path.relative_to(servers.ROOT)}")


if __name__ == "__main__":
    main()
