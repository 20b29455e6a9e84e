"""Added latency of botline's POST /v1/chat/completions over calling the fake upstream directly, side
by side with LiteLLM's proxy.

OS processes on 127.0.0.1: the zero-latency fake LLM, `botline serve` (SQLite store in a temp dir,
one gateway `bench` pointing at the fake), LiteLLM's proxy (bench.litellm: its own venv, one worker,
a master key, model `bench` -> the same fake; left out with the reason printed when its venv can't
be created, or with --no-litellm), optionally botline with what-if levers (bench.levers), and this
process as the load generator (aiohttp, one keep-alive session per concurrency level). For every mode
(JSON answer, `stream: true`) and concurrency (1, 50) it warms every target up, then runs rounds in
which every target gets its requests, the order rotating every round, so all of them share the
machine's drift. A slow contender gets a smaller share of requests per round (LiteLLM: SLOW_SHARE) so
a round stays short; the interleaving, not equal counts, is what keeps the ratios honest.
Added = contender - direct, at p50 and p99 of the pooled samples; requests/s is the median over
rounds of requests / round wall time; CPU per request is the contender process's user + system CPU
time over the measured rounds / requests.

Afterwards py-spy samples botline (and LiteLLM, JSON only) under 50-client load (see bench.profile).

    .venv/bin/python -m bench.proxy_latency [--quick] [--no-profile] [--no-litellm] [--mode json|stream]
                                             [--levers LEVER,LEVER ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import litellm, loadgen, profile, servers
from bench.loadgen import Batch, Target, percentile

PROMPT = "Hello! Can you tell me a short fact about the sea?"
MODES = ("json", "stream")
DIRECT = "direct"
BOTLINE = "botline"
LITELLM = "litellm"
BASELINE = "botline-before"
SLOW_SHARE = 0.25
"""LiteLLM's share of the requests per round (it is ~10x slower: equal counts would make rounds 10x longer)."""
MIN_REQUESTS = 200
"""...but never fewer than this per round, so its p99 rests on enough samples."""
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


@dataclass(frozen=True)
class Contender:
    """A proxy in front of the fake upstream, and how to call it."""

    name: str
    server: servers.Server
    key: str
    share: float = 1.0
    """Fraction of the plan's requests per round it gets."""

    def requests(self, n: int) -> int:
        return n if self.share >= 1 else min(n, max(MIN_REQUESTS, int(n * self.share)))


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
    cpu_ms_per_request: float
    """The contender process's CPU time (user + system, all threads) per request, over the measured rounds."""
    direct_ttfb_p50: float | None = None
    ttfb_p50: float | None = None
    added_ttfb_p50: float | None = None
    ttfb_p99: float | None = None
    errors: int = 0
    first_error: str | None = None


@dataclass
class Result:
    plan: dict[str, Any]
    contenders: dict[str, str] = field(default_factory=dict)
    """Contender name -> what it is (botline, botline with bench.levers, LiteLLM and its version)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Contender -> why it was not measured."""
    cells: list[Cell] = field(default_factory=list)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    load_average: dict[str, float] = field(default_factory=dict)
    """1-minute load average at start and end: other work on the machine skews every figure."""


@dataclass
class Measured:
    """A batch plus the CPU time the target's process spent during it."""

    batch: Batch
    cpu: float


def _target(name: str, server: servers.Server, model: str, stream: bool, key: str | None) -> Target:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        payload["stream"] = True
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return Target(name, f"{server.base_url}/v1/chat/completions", orjson.dumps(payload), headers, stream)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _pooled(batches: list[Batch], attribute: str) -> list[float]:
    return [x for b in batches for x in getattr(b, attribute)]


def _cell(mode: str, concurrency: int, contender: str, direct: list[Measured], through: list[Measured]) -> Cell:
    d_batches, b_batches = [m.batch for m in direct], [m.batch for m in through]
    d_total, b_total = _pooled(d_batches, "total"), _pooled(b_batches, "total")
    cell = Cell(
        mode=mode, concurrency=concurrency, contender=contender, requests=len(b_total),
        direct_p50=_ms(percentile(d_total, 0.5)), direct_p99=_ms(percentile(d_total, 0.99)),
        p50=_ms(percentile(b_total, 0.5)), p99=_ms(percentile(b_total, 0.99)),
        added_p50=_ms(percentile(b_total, 0.5) - percentile(d_total, 0.5)),
        added_p99=_ms(percentile(b_total, 0.99) - percentile(d_total, 0.99)),
        added_p50_rounds=[
            _ms(percentile(b.total, 0.5) - percentile(d.total, 0.5)) for d, b in zip(d_batches, b_batches, strict=True)
        ],
        direct_rps=round(statistics.median(b.requests_per_second for b in d_batches), 1),
        rps=round(statistics.median(b.requests_per_second for b in b_batches), 1),
        cpu_ms_per_request=round(1000 * sum(m.cpu for m in through) / max(len(b_total), 1), 3),
        errors=sum(b.errors for b in b_batches),
        first_error=next((b.first_error for b in d_batches + b_batches if b.first_error), None),
    )
    if mode == "stream":
        d_first, b_first = _pooled(d_batches, "first_byte"), _pooled(b_batches, "first_byte")
        cell.direct_ttfb_p50 = _ms(percentile(d_first, 0.5))
        cell.ttfb_p50 = _ms(percentile(b_first, 0.5))
        cell.added_ttfb_p50 = _ms(percentile(b_first, 0.5) - percentile(d_first, 0.5))
        cell.ttfb_p99 = _ms(percentile(b_first, 0.99))
    return cell


async def _batch(http: Any, target: Target, pid: int, n: int, concurrency: int) -> Measured:
    cpu0 = servers.cpu_seconds(pid)
    batch = await loadgen.run_batch(http, target, n=n, concurrency=concurrency)
    return Measured(batch, servers.cpu_seconds(pid) - cpu0)


async def _measure(fake: servers.Server, contenders: list[Contender], plan: Plan, log: Any,
                   modes: tuple[str, ...]) -> list[Cell]:
    cells: list[Cell] = []
    direct = Contender(DIRECT, fake, "")
    everyone = [direct, *contenders]
    for mode in modes:
        stream = mode == "stream"
        targets = {c.name: _target(c.name, c.server, servers.UPSTREAM_MODEL if c is direct else servers.GATEWAY_SLUG,
                                   stream, c.key or None) for c in everyone}
        for concurrency in plan.concurrencies:
            n = plan.per_round[concurrency]
            measured: dict[str, list[Measured]] = {c.name: [] for c in everyone}
            async with loadgen.session(concurrency) as http:
                for c in everyone:
                    await loadgen.run_batch(http, targets[c.name], n=c.requests(plan.warmup[concurrency]),
                                            concurrency=concurrency)
                for round_number in range(plan.rounds):
                    shift = round_number % len(everyone)
                    for c in everyone[shift:] + everyone[:shift]:
                        m = await _batch(http, targets[c.name], c.server.pid, c.requests(n), concurrency)
                        measured[c.name].append(m)
                        if m.batch.errors and m.batch.first_error:
                            log(f"  {c.name}: {m.batch.errors} errors, first: {m.batch.first_error}")
            for c in contenders:
                cell = _cell(mode, concurrency, c.name, measured[DIRECT], measured[c.name])
                log(f"  {mode:6} c={concurrency:<3} {c.name:<12} direct p50 {cell.direct_p50:7.3f} ms  p50 "
                    f"{cell.p50:7.3f} ms  added p50 {cell.added_p50:7.3f} ms  p99 {cell.added_p99:7.3f} ms  "
                    f"{cell.rps:7.1f} req/s  {cell.cpu_ms_per_request:.2f} ms CPU/req  errors {cell.errors}")
                cells.append(cell)
    return cells


async def _profile(contender: Contender, plan: Plan, out_dir: Path, stamp: str, log: Any,
                   modes: tuple[str, ...]) -> list[dict[str, Any]]:
    summaries: list[dict[str, Any]] = []
    broken_down = ("litellm",) if contender.name == LITELLM else profile.BROKEN_DOWN
    for mode in modes:
        target = _target(contender.name, contender.server, servers.GATEWAY_SLUG, mode == "stream", contender.key)
        raw_path = out_dir / f"profile-{stamp}-{contender.name}-{mode}-c50.txt"
        async with loadgen.session(50) as http:
            recorder = await profile.start(contender.server.pid, raw_path, seconds=plan.profile_seconds)
            if recorder is None:
                log("  py-spy not available; profile skipped (pip install py-spy into the venv)")
                return summaries
            batch = await loadgen.run_for(http, target, seconds=plan.profile_seconds + 1.5, concurrency=50)
            ok = await profile.finish(recorder)
        if not ok or not raw_path.exists():
            log(f"  py-spy failed for {contender.name} {mode}; see {raw_path}.log")
            continue
        summary = profile.summarize(raw_path.read_text(), seconds=plan.profile_seconds,
                                    requests=int(batch.requests_per_second * plan.profile_seconds),
                                    broken_down=broken_down)
        summary.update(process=contender.name, mode=mode, concurrency=50, raw=str(raw_path.relative_to(servers.ROOT)),
                       requests_per_second_while_sampled=round(batch.requests_per_second, 1))
        summaries.append(summary)
        log(f"  profiled {contender.name} {mode}: {summary['samples']} main-thread samples -> {raw_path.name}")
    return summaries


def _litellm(stack: contextlib.ExitStack, tmp: Path, fake: servers.Server, result: Result,
             log: Any) -> Contender | None:
    availability = litellm.ensure(log)
    if availability.executable is None:
        result.skipped[LITELLM] = availability.reason
        log(f"  LiteLLM left out: {availability.reason}")
        return None
    try:
        server = stack.enter_context(litellm.proxy(tmp, fake, availability.executable))
    except RuntimeError as exc:
        result.skipped[LITELLM] = f"did not start: {str(exc).splitlines()[0]}"
        log(f"  LiteLLM left out: {exc}")
        return None
    result.contenders[LITELLM] = f"LiteLLM proxy {litellm.VERSION}, 1 worker (uvicorn), master key, no database"
    return Contender(LITELLM, server, litellm.MASTER_KEY, share=SLOW_SHARE)


def run(*, quick: bool = False, with_profile: bool = True, out_dir: Path, log: Any = print,
        modes: tuple[str, ...] = MODES, levers: tuple[str, ...] = (), with_litellm: bool = True,
        baseline: Path | None = None) -> Result:
    """Measures botline (plus LiteLLM, plus one what-if contender per entry of `levers`) against the fake.

    `baseline` (a `src` folder, e.g. `git archive <commit> src`) adds botline imported from there as
    the contender BASELINE, measured in the same interleaved rounds and profiled like this checkout."""
    plan = QUICK if quick else FULL
    result = Result(plan=asdict(plan))
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
        contenders = [Contender(BOTLINE, stack.enter_context(servers.botline(tmp, fake)), servers.BENCH_KEY)]
        result.contenders[BOTLINE] = "botline serve (this checkout), SQLite, WARNING logs"
        for i, lv in enumerate(levers):
            name = f"what-if {i + 1}"
            server = stack.enter_context(servers.botline(tmp, fake, name=name.replace(" ", "-"), levers=lv))
            contenders.append(Contender(name, server, servers.BENCH_KEY))
            result.contenders[name] = f"botline with bench.levers {lv}"
        if baseline is not None:
            server = stack.enter_context(servers.botline(tmp, fake, name="botline-baseline", source=baseline))
            contenders.append(Contender(BASELINE, server, servers.BENCH_KEY))
            result.contenders[BASELINE] = f"botline serve imported from {baseline}, SQLite, WARNING logs"
        if with_litellm:
            contender = _litellm(stack, tmp, fake, result, log)
            if contender is not None:
                contenders.append(contender)
        else:
            result.skipped[LITELLM] = "left out (--no-litellm)"
        log(f"proxy latency: fake LLM pid {fake.pid} :{fake.port}; "
            + "; ".join(f"{c.name} pid {c.server.pid} :{c.server.port}" for c in contenders))
        result.cells = runner(_measure(fake, contenders, plan, log, modes))
        if with_profile:
            result.profiles = [summary for c in contenders if c.name in (BOTLINE, BASELINE)
                               for summary in runner(_profile(c, plan, out_dir, stamp, log, modes))]
            result.profiles += [summary for c in contenders if c.name == LITELLM
                                for summary in runner(_profile(c, plan, out_dir, stamp, log, ("json",)))]
    result.seconds = round(time.perf_counter() - started, 1)
    result.load_average["end"] = os.getloadavg()[0]
    return result


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(result: Result) -> str:
    lines = [
        "| mode | clients | contender | direct p50 | p50 | **added p50** | added p50 per round | direct p99 | "
        "p99 | **added p99** | direct req/s | **req/s** | CPU per request | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result.cells:
        rounds = " / ".join(f"{x:.2f}" for x in c.added_p50_rounds)
        lines.append(
            f"| {c.mode} | {c.concurrency} | {c.contender} | {_fmt(c.direct_p50)} | {_fmt(c.p50)} | "
            f"**{_fmt(c.added_p50)}** | {rounds} | {_fmt(c.direct_p99)} | {_fmt(c.p99)} | **{_fmt(c.added_p99)}** | "
            f"{c.direct_rps:,.0f} | **{c.rps:,.0f}** | {c.cpu_ms_per_request:.2f} ms | {c.errors} |"
        )
    streams = [c for c in result.cells if c.mode == "stream"]
    if streams:
        lines += ["", "| stream: first chunk | clients | contender | direct p50 | p50 | added p50 | p99 |",
                  "|---|---|---|---|---|---|---|"]
        for c in streams:
            lines.append(f"| time to first byte | {c.concurrency} | {c.contender} | {_fmt(c.direct_ttfb_p50)} | "
                         f"{_fmt(c.ttfb_p50)} | {_fmt(c.added_ttfb_p50)} | {_fmt(c.ttfb_p99)} |")
    lines += ["", targets_table(result), ""]
    lines.append("Latencies in ms. Added = contender - direct at the same percentile of the pooled samples. "
                 "CPU per request: the contender's process, all threads.")
    load = result.load_average
    if load:
        lines.append(f"1-minute load average: {load.get('start', 0):.2f} at start, {load.get('end', 0):.2f} at end "
                     f"({os.cpu_count()} CPUs; the benchmark itself keeps about 2 busy at 50 clients).")
        if max(load.values()) > NOISY_LOAD:
            lines.append("WARNING: the machine was busy with other work; treat these figures as noisy.")
    for name, what in result.contenders.items():
        lines.append(f"{name} = {what}")
    for name, why in result.skipped.items():
        lines.append(f"{name}: not measured ({why})")
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def targets_table(result: Result) -> str:
    """Issue 6's /v1 targets, per mode, from the cells of this one run."""
    cells = {(c.mode, c.concurrency, c.contender): c for c in result.cells}
    lines = ["| target (issue 6 §5) | mode | measured | |", "|---|---|---|---|"]
    for mode in dict.fromkeys(c.mode for c in result.cells):
        one = cells.get((mode, 1, BOTLINE))
        if one:
            lines.append(f"| botline added p50 <= 1 ms at 1 client | {mode} | {one.added_p50:.2f} ms | "
                         f"{_met(one.added_p50 <= 1)} |")
        ours, theirs = cells.get((mode, 50, BOTLINE)), cells.get((mode, 50, LITELLM))
        if ours and theirs:
            ratio = ours.rps / theirs.rps if theirs.rps else float("inf")
            lines.append(f"| >= 10x LiteLLM's requests/s per process (50 clients) | {mode} | {ours.rps:,.0f} vs "
                         f"{theirs.rps:,.0f} req/s = {ratio:.1f}x | {_met(ratio >= 10)} |")
            share = ours.added_p50 / theirs.added_p50 if theirs.added_p50 > 0 else float("inf")
            lines.append(f"| added p50 at 50 clients <= 1/5 of LiteLLM's | {mode} | {ours.added_p50:.1f} vs "
                         f"{theirs.added_p50:.1f} ms = 1/{1 / share:.1f} | {_met(share <= 0.2)} |")
        if ours and theirs and ours.cpu_ms_per_request:
            lines.append(f"| (no target; steadier under load) CPU per request, 50 clients | {mode} | "
                         f"{ours.cpu_ms_per_request:.2f} vs {theirs.cpu_ms_per_request:.2f} ms = "
                         f"{theirs.cpu_ms_per_request / ours.cpu_ms_per_request:.1f}x less | |")
    if LITELLM in result.skipped:
        lines.append(f"| LiteLLM comparisons | - | not measured: {result.skipped[LITELLM]} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and requests (a smoke run)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    parser.add_argument("--no-litellm", action="store_true", help="measure botline without LiteLLM beside it")
    parser.add_argument("--mode", choices=MODES, action="append", help="only this mode (repeatable)")
    parser.add_argument("--levers", action="append", default=[],
                        help="add a what-if contender: botline with these bench.levers (repeatable)")
    parser.add_argument("--baseline", type=Path,
                        help="a src folder of an older commit (git archive <commit> src), measured beside")
    args = parser.parse_args()
    out_dir = servers.RESULTS
    result = run(quick=args.quick, with_profile=not args.no_profile, out_dir=out_dir,
                 modes=tuple(args.mode or MODES), levers=tuple(args.levers), with_litellm=not args.no_litellm,
                 baseline=args.baseline)
    print(table(result))
    for summary in result.profiles:
        print(profile.report(summary))
    servers.save_result("proxy_latency", asdict(result))


if __name__ == "__main__":
    main()
