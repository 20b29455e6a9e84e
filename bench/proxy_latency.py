"""Added latency of botline's POST /v1/chat/completions over calling the fake upstream directly.

Three OS processes on 127.0.0.1: the zero-latency fake LLM, `botline serve` (SQLite store in a temp
dir, one gateway `bench` pointing at the fake), and this process as the load generator (aiohttp,
one keep-alive session). For every mode (JSON answer, `stream: true`) and concurrency (1, 50) it
warms both targets up, then runs interleaved rounds alternating "direct to the fake" and "through
botline" (the order flips every round) so both share the machine's drift. Added = botline - direct,
at p50 and p99 of the pooled samples; requests/s is the median over rounds of n / round wall time.

Optionally py-spy samples the botline process under 50-client load afterwards (see bench.profile).

    .venv/bin/python -m bench.proxy_latency [--quick] [--no-profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
    """One (mode, concurrency) measurement: latencies in milliseconds."""

    mode: str
    concurrency: int
    requests: int
    direct_p50: float
    direct_p99: float
    botline_p50: float
    botline_p99: float
    added_p50: float
    added_p99: float
    added_p50_rounds: list[float]
    """Added p50 within each round (their spread shows the noise)."""
    direct_rps: float
    botline_rps: float
    direct_ttfb_p50: float | None = None
    botline_ttfb_p50: float | None = None
    added_ttfb_p50: float | None = None
    botline_ttfb_p99: float | None = None
    errors: int = 0
    first_error: str | None = None


@dataclass
class Result:
    plan: dict[str, Any]
    cells: list[Cell] = field(default_factory=list)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def _targets(fake: servers.Server, proxy: servers.Server, stream: bool) -> tuple[Target, Target]:
    def body(model: str) -> bytes:
        payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
        if stream:
            payload["stream"] = True
        return orjson.dumps(payload)

    json_headers = {"Content-Type": "application/json"}
    direct = Target("direct", f"{fake.base_url}/v1/chat/completions", body(servers.UPSTREAM_MODEL),
                    json_headers, stream)
    through = Target("botline", f"{proxy.base_url}/v1/chat/completions", body(servers.GATEWAY_SLUG),
                     {**json_headers, "Authorization": f"Bearer {servers.BENCH_KEY}"}, stream)
    return direct, through


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _cell(mode: str, concurrency: int, direct: list[Batch], through: list[Batch]) -> Cell:
    def pooled(batches: list[Batch], attribute: str) -> list[float]:
        return [x for b in batches for x in getattr(b, attribute)]

    d_total, b_total = pooled(direct, "total"), pooled(through, "total")
    cell = Cell(
        mode=mode, concurrency=concurrency, requests=len(b_total),
        direct_p50=_ms(percentile(d_total, 0.5)), direct_p99=_ms(percentile(d_total, 0.99)),
        botline_p50=_ms(percentile(b_total, 0.5)), botline_p99=_ms(percentile(b_total, 0.99)),
        added_p50=_ms(percentile(b_total, 0.5) - percentile(d_total, 0.5)),
        added_p99=_ms(percentile(b_total, 0.99) - percentile(d_total, 0.99)),
        added_p50_rounds=[_ms(percentile(b.total, 0.5) - percentile(d.total, 0.5)) for d, b in zip(direct, through)],
        direct_rps=round(statistics.median(b.requests_per_second for b in direct), 1),
        botline_rps=round(statistics.median(b.requests_per_second for b in through), 1),
        errors=sum(b.errors for b in direct + through),
        first_error=next((b.first_error for b in direct + through if b.first_error), None),
    )
    if mode == "stream":
        d_first, b_first = pooled(direct, "first_byte"), pooled(through, "first_byte")
        cell.direct_ttfb_p50 = _ms(percentile(d_first, 0.5))
        cell.botline_ttfb_p50 = _ms(percentile(b_first, 0.5))
        cell.added_ttfb_p50 = _ms(percentile(b_first, 0.5) - percentile(d_first, 0.5))
        cell.botline_ttfb_p99 = _ms(percentile(b_first, 0.99))
    return cell


async def _measure(fake: servers.Server, proxy: servers.Server, plan: Plan, log: Any) -> list[Cell]:
    cells: list[Cell] = []
    for mode in MODES:
        direct, through = _targets(fake, proxy, stream=mode == "stream")
        for concurrency in plan.concurrencies:
            n = plan.per_round[concurrency]
            async with loadgen.session(concurrency) as http:
                for target in (direct, through):
                    await loadgen.run_batch(http, target, n=plan.warmup[concurrency], concurrency=concurrency)
                direct_batches: list[Batch] = []
                through_batches: list[Batch] = []
                for round_number in range(plan.rounds):
                    order = (direct, through) if round_number % 2 == 0 else (through, direct)
                    for target in order:
                        batch = await loadgen.run_batch(http, target, n=n, concurrency=concurrency)
                        (direct_batches if target is direct else through_batches).append(batch)
            cell = _cell(mode, concurrency, direct_batches, through_batches)
            log(f"  {mode:6} c={concurrency:<3} direct p50 {cell.direct_p50:7.3f} ms  botline p50 "
                f"{cell.botline_p50:7.3f} ms  added p50 {cell.added_p50:7.3f} ms  p99 {cell.added_p99:7.3f} ms  "
                f"botline {cell.botline_rps:7.1f} req/s  errors {cell.errors}")
            cells.append(cell)
    return cells


async def _profile(proxy: servers.Server, fake: servers.Server, plan: Plan, out_dir: Path, stamp: str,
                   log: Any) -> list[dict[str, Any]]:
    summaries: list[dict[str, Any]] = []
    for mode in MODES:
        _, through = _targets(fake, proxy, stream=mode == "stream")
        raw_path = out_dir / f"profile-{stamp}-{mode}-c50.txt"
        async with loadgen.session(50) as http:
            recorder = await profile.start(proxy.pid, raw_path, seconds=plan.profile_seconds)
            if recorder is None:
                log("  py-spy not available; profile skipped (pip install py-spy into the venv)")
                return summaries
            batch = await loadgen.run_for(http, through, seconds=plan.profile_seconds + 1.5, concurrency=50)
            ok = await profile.finish(recorder)
        if not ok or not raw_path.exists():
            log(f"  py-spy failed for {mode}; see {raw_path}.log")
            continue
        summary = profile.summarize(raw_path.read_text(), seconds=plan.profile_seconds,
                                    requests=int(batch.requests_per_second * plan.profile_seconds))
        summary.update(mode=mode, concurrency=50, raw=str(raw_path.relative_to(servers.ROOT)),
                       requests_per_second_while_sampled=round(batch.requests_per_second, 1))
        summaries.append(summary)
        log(f"  profiled {mode}: {summary['samples']} samples -> {raw_path.name}")
    return summaries


def run(*, quick: bool = False, with_profile: bool = True, out_dir: Path, log: Any = print) -> Result:
    plan = QUICK if quick else FULL
    result = Result(plan=asdict(plan))
    started = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        import uvloop
        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    with servers.workdir("botline-bench-") as tmp, servers.fake_llm(tmp) as fake, servers.botline(tmp, fake) as proxy:
        log(f"proxy latency: fake LLM pid {fake.pid} :{fake.port}, botline pid {proxy.pid} :{proxy.port}")
        result.cells = runner(_measure(fake, proxy, plan, log))
        if with_profile:
            result.profiles = runner(_profile(proxy, fake, plan, out_dir, stamp, log))
    result.seconds = round(time.perf_counter() - started, 1)
    return result


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(result: Result) -> str:
    lines = [
        "| mode | clients | direct p50 | botline p50 | **added p50** | added p50 per round | direct p99 | "
        "botline p99 | **added p99** | direct req/s | **botline req/s** | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result.cells:
        rounds = " / ".join(f"{x:.2f}" for x in c.added_p50_rounds)
        lines.append(
            f"| {c.mode} | {c.concurrency} | {_fmt(c.direct_p50)} | {_fmt(c.botline_p50)} | **{_fmt(c.added_p50)}** | "
            f"{rounds} | {_fmt(c.direct_p99)} | {_fmt(c.botline_p99)} | **{_fmt(c.added_p99)}** | "
            f"{c.direct_rps:.0f} | **{c.botline_rps:.0f}** | {c.errors} |"
        )
    streams = [c for c in result.cells if c.mode == "stream"]
    if streams:
        lines += ["", "| stream, time to first byte | clients | direct p50 | botline p50 | added p50 | botline p99 |",
                  "|---|---|---|---|---|---|"]
        for c in streams:
            lines.append(f"| first chunk | {c.concurrency} | {_fmt(c.direct_ttfb_p50)} | {_fmt(c.botline_ttfb_p50)} | "
                         f"{_fmt(c.added_ttfb_p50)} | {_fmt(c.botline_ttfb_p99)} |")
    lines.append("")
    lines.append("Latencies in ms. Added = botline - direct at the same percentile of the pooled samples.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and requests (a smoke run)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    args = parser.parse_args()
    out_dir = servers.ROOT / "bench" / "results"
    result = run(quick=args.quick, with_profile=not args.no_profile, out_dir=out_dir)
    print(table(result))
    for summary in result.profiles:
        print(profile.report(summary))
    path = out_dir / f"proxy_latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(asdict(result), indent=2))
    print(f"raw results: {path}")


if __name__ == "__main__":
    main()
