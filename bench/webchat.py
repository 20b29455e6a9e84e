"""Public web chat (issue 3): prompts per second per process, and open SSE streams per process.

Prompts (`run_prompts`): the zero-latency fake LLM; one botline on SQLite and one on Redis (a unique
key prefix, deleted afterwards), both set up through the management API (gateway -> chat client ->
sessions). Closed loop, non-streaming POST /api/v1/public/chat-clients/{accessKey}/prompt at 1 and
50 clients. One session's prompts are serialized by design, so every client has its own session,
and moves to a fresh one every PROMPTS_PER_SESSION prompts (a session's whole history goes to the
model on every turn: an ever-growing benchmark conversation would measure history length, not
throughput). Rounds alternate SQLite and Redis so both share the machine's drift.

Streams (`run_streams`): bench/slow_llm.py streams one word every few seconds; N streaming prompts
(`?stream=true`, one session each) are opened gradually (at most RAMP_PENDING waiting for their first
delta at a time) and held; botline's RSS (VmRSS) is sampled along the way. At the plateau the slow
LLM is told to finish every stream, and the benchmark waits for the `done` events.

    .venv/bin/python -m bench.webchat [--quick] [--part prompts|streams] [--streams N] [--levers L]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import api, loadgen, profile, servers
from bench.loadgen import percentile

PROMPTS_PER_SESSION = 10
PROMPT = orjson.dumps({"prompt": {"role": "user", "content": "Hello! What can you do for me?"}})
JSON_HEADERS = {"Content-Type": "application/json"}
NOISY_LOAD = 3.0


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def uvloop_run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


# --------------------------------------------------------------------------- prompts per second


@dataclass(frozen=True)
class PromptPlan:
    rounds: int
    per_round: dict[int, int]
    warmup: dict[int, int]
    concurrencies: tuple[int, ...] = (1, 50)


PROMPTS_FULL = PromptPlan(rounds=3, per_round={1: 200, 50: 1500}, warmup={1: 30, 50: 200})
PROMPTS_QUICK = PromptPlan(rounds=1, per_round={1: 60, 50: 400}, warmup={1: 10, 50: 100})
PROFILE_SECONDS = {False: 8, True: 3}
"""py-spy sampling of the SQLite botline at 50 clients, by --quick."""


@dataclass
class PromptCell:
    store: str
    concurrency: int
    prompts: int
    p50: float
    p99: float
    rps: float
    rps_rounds: list[float]
    cpu_ms_per_prompt: float
    errors: int = 0
    first_error: str | None = None


@dataclass
class PromptResult:
    plan: dict[str, Any]
    cells: list[PromptCell] = field(default_factory=list)
    stores: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    load_average: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


class SessionPool:
    """Access keys handed out to one client at a time, each for at most PROMPTS_PER_SESSION prompts."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = keys
        self._next = 0

    def take(self) -> str:
        if self._next >= len(self._keys):
            raise RuntimeError("the benchmark ran out of sessions; raise the number created")
        key = self._keys[self._next]
        self._next += 1
        return key


@dataclass
class Batch:
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0
    errors: int = 0
    first_error: str | None = None


async def prompt_batch(http: aiohttp.ClientSession, base: str, pool: SessionPool, pid: int, *,
                        n: int, concurrency: int) -> Batch:
    batch = Batch()
    remaining = n

    async def client() -> None:
        nonlocal remaining
        key, used = pool.take(), 0
        while remaining > 0:
            remaining -= 1
            if used == PROMPTS_PER_SESSION:
                key, used = pool.take(), 0
            used += 1
            started = time.perf_counter()
            if error := await loadgen.post(http, api.prompt_url(base, key), PROMPT, JSON_HEADERS):
                loadgen.note_error(batch, error)
                continue
            batch.latencies.append(time.perf_counter() - started)

    cpu0 = servers.cpu_seconds(pid)
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(concurrency, n))))
    batch.wall = time.perf_counter() - started
    batch.cpu = servers.cpu_seconds(pid) - cpu0
    return batch


def _sessions_needed(plan: PromptPlan, profile_seconds: float = 0) -> int:
    total = int(profile_seconds * 800 / PROMPTS_PER_SESSION) + 50 if profile_seconds else 0
    for c in plan.concurrencies:
        batches = 1 + plan.rounds
        prompts = plan.warmup[c] + plan.rounds * plan.per_round[c]
        total += math.ceil(prompts / PROMPTS_PER_SESSION) + batches * c
    return total


async def _profile_prompts(server: servers.Server, pool: SessionPool, seconds: float, out: Path,
                           log: Any, store: str) -> dict[str, Any] | None:
    """py-spy on `server` while 50 closed-loop clients send prompts for about `seconds`."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        recorder = await profile.start(server.pid, out, seconds=seconds)
        if recorder is None:
            log("  py-spy not available; profile skipped")
            return None
        deadline = time.perf_counter() + seconds + 1.0
        done = 0
        while time.perf_counter() < deadline:
            batch = await prompt_batch(http, server.base_url, pool, server.pid, n=500, concurrency=50)
            done += len(batch.latencies)
        ok = await profile.finish(recorder)
    if not ok or not out.exists():
        log(f"  py-spy failed; see {out}.log")
        return None
    rate = done / (seconds + 1.0)
    summary = profile.summarize(out.read_text(), seconds=seconds, requests=int(rate * seconds))
    summary.update(mode=f"web chat prompt ({store})", concurrency=50, raw=str(out.relative_to(servers.ROOT)),
                   requests_per_second_while_sampled=round(rate, 1))
    return summary


async def _measure_prompts(targets: dict[str, servers.Server], plan: PromptPlan, log: Any,
                           profile_seconds: float = 0, out_dir: Path | None = None,
                   profiled: tuple[str, ...] = ("sqlite",)) -> tuple[list[PromptCell], list[dict[str, Any]]]:
    pools: dict[str, SessionPool] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for name, server in targets.items():
            started = time.perf_counter()
            client_id = await api.create_client(http, server.base_url)
            wanted = _sessions_needed(plan, profile_seconds if name in profiled else 0)
            sessions = await api.create_sessions(http, server.base_url, client_id, wanted)
            pools[name] = SessionPool([s["accessKey"] for s in sessions])
            log(f"  {name}: {len(sessions)} sessions created in {time.perf_counter() - started:.1f} s")
    cells: list[PromptCell] = []
    names = list(targets)
    for concurrency in plan.concurrencies:
        batches: dict[str, list[Batch]] = {name: [] for name in names}
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
            for name in names:
                await prompt_batch(http, targets[name].base_url, pools[name], targets[name].pid,
                                    n=plan.warmup[concurrency], concurrency=concurrency)
            for round_number in range(plan.rounds):
                order = names if round_number % 2 == 0 else names[::-1]
                for name in order:
                    batch = await prompt_batch(http, targets[name].base_url, pools[name], targets[name].pid,
                                                n=plan.per_round[concurrency], concurrency=concurrency)
                    batches[name].append(batch)
        for name in names:
            pooled = [x for b in batches[name] for x in b.latencies]
            done = sum(len(b.latencies) for b in batches[name])
            cell = PromptCell(
                store=name, concurrency=concurrency, prompts=done,
                p50=_ms(percentile(pooled, 0.5)), p99=_ms(percentile(pooled, 0.99)),
                rps=round(statistics.median(len(b.latencies) / b.wall for b in batches[name]), 1),
                rps_rounds=[round(len(b.latencies) / b.wall, 1) for b in batches[name]],
                cpu_ms_per_prompt=round(1000 * sum(b.cpu for b in batches[name]) / max(done, 1), 2),
                errors=sum(b.errors for b in batches[name]),
                first_error=next((b.first_error for b in batches[name] if b.first_error), None),
            )
            log(f"  prompts {name:6} c={concurrency:<3} p50 {cell.p50:7.2f} ms  p99 {cell.p99:7.2f} ms  "
                f"{cell.rps:7.1f} prompts/s  {cell.cpu_ms_per_prompt:.2f} ms CPU/prompt  errors {cell.errors}")
            cells.append(cell)
    profiles = []
    for name in profiled if profile_seconds else ():
        if name not in targets or out_dir is None:
            continue
        raw = out_dir / f"profile-{time.strftime('%Y%m%d-%H%M%S')}-webchat-{name}-c50.txt"
        summary = await _profile_prompts(targets[name], pools[name], profile_seconds, raw, log, name)
        if summary is not None:
            profiles.append(summary)
    return cells, profiles


def run_prompts(*, quick: bool = False, log: Any = print, stores: tuple[str, ...] = ("sqlite", "redis"),
                levers: str | None = None, with_profile: bool = False, out_dir: Path | None = None,
                what_ifs: tuple[str, ...] = (), baseline: Path | None = None,
                profiled: tuple[str, ...] = ("sqlite",)) -> PromptResult:
    """`levers` apply to every botline; each of `what_ifs` adds a SQLite botline with those levers;
    `baseline` (a `src` folder, e.g. `git archive <commit> src`) adds a botline per store importing
    botline from there, measured in the same interleaved rounds."""
    plan = PROMPTS_QUICK if quick else PROMPTS_FULL
    result = PromptResult(plan=asdict(plan))
    result.load_average["start"] = load_average()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(servers.workdir("botline-bench-webchat-"))
        fake = stack.enter_context(servers.fake_llm(tmp))
        targets: dict[str, servers.Server] = {}
        for store in stores:
            if store == "redis" and not servers.redis_available():
                result.skipped["redis"] = f"no Redis answers at {servers.REDIS_URL}"
                log(f"  redis skipped: {result.skipped['redis']}")
                continue
            for source in (None, baseline) if baseline else (None,):
                tag = "webchat" if source is None else "webchat-baseline"
                overrides = stack.enter_context(servers.redis_storage(tag)) if store == "redis" else {}
                name = store if source is None else f"{store} (baseline)"
                targets[name] = stack.enter_context(servers.botline(
                    tmp, fake, name="botline-" + name.replace(" ", "-").strip("()").replace("(", ""),
                    overrides=overrides, levers=levers, source=source))
        for i, what_if in enumerate(what_ifs):
            targets[f"sqlite + {what_if}"] = stack.enter_context(
                servers.botline(tmp, fake, name=f"botline-what-if-{i}",
                                levers=",".join(filter(None, (levers, what_if)))))
        result.stores = list(targets)
        log("web chat prompts: " + "; ".join(f"{n} pid {s.pid} :{s.port}" for n, s in targets.items()))
        profile_seconds = PROFILE_SECONDS[quick] if with_profile else 0
        result.cells, result.profiles = uvloop_run(_measure_prompts(targets, plan, log, profile_seconds, out_dir,
                                                                        profiled))
    result.seconds = round(time.perf_counter() - started, 1)
    result.load_average["end"] = load_average()
    return result


def prompts_table(result: PromptResult) -> str:
    lines = ["| store | clients | prompts | p50 ms | p99 ms | **prompts/s** | per round | botline CPU per prompt "
             "| errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in result.cells:
        lines.append(f"| {c.store} | {c.concurrency} | {c.prompts} | {c.p50:.2f} | {c.p99:.2f} | **{c.rps:,.0f}** | "
                     f"{' / '.join(f'{x:,.0f}' for x in c.rps_rounds)} | {c.cpu_ms_per_prompt:.2f} ms | {c.errors} |")
    for store, why in result.skipped.items():
        lines.append(f"\n{store}: skipped ({why})")
    lines.append(_load_line(result.load_average))
    return "\n".join(lines)


def _load_line(load: dict[str, float]) -> str:
    line = (f"\n1-minute load average: {load.get('start', 0):.2f} at start, {load.get('end', 0):.2f} at end "
            f"({os.cpu_count()} CPUs).")
    if load and max(load.values()) > NOISY_LOAD:
        line += "\nWARNING: the machine was busy with other work; treat these figures as noisy."
    return line


# --------------------------------------------------------------------------- open SSE streams


@dataclass(frozen=True)
class StreamPlan:
    streams: int
    ramp_seconds: float
    """The ramp stops here even if `streams` were not all open."""
    stall_seconds: float
    """...or when no stream got its first delta for this long (something caps the number of streams)."""
    plateau_seconds: float
    drain_seconds: float
    word_interval: float


STREAMS_FULL = StreamPlan(streams=10_000, ramp_seconds=75, stall_seconds=5, plateau_seconds=4, drain_seconds=30,
                          word_interval=5)
STREAMS_QUICK = StreamPlan(streams=500, ramp_seconds=20, stall_seconds=5, plateau_seconds=2, drain_seconds=15,
                           word_interval=2)
RAMP_PENDING = int(os.environ.get("BENCH_RAMP_PENDING", "100"))
"""Streams at most waiting for their first delta at a time (the ramp's pace follows botline's)."""
SESSION_CONCURRENCY = 100
PROBES = 20
"""New streams opened one after another at the plateau: time to first delta with N streams already open."""
PROBE_TIMEOUT = 5.0
NOFILE_MARGIN = 200
"""File descriptors botline uses besides the streams' sockets (SQLite, listeners, pipes, ...), with room to spare."""


@dataclass
class StreamResult:
    plan: dict[str, Any]
    levers: str | None = None
    target: int = 0
    nofile_limit: int = 0
    """The open-files limit botline got (it needs 2 per stream: the client's socket and the upstream's)."""
    capped_by_nofile: bool = False
    launched: int = 0
    opened: int = 0
    """Streams that got their first `event: delta`."""
    peak_open: int = 0
    """The most streams open (first delta received, not yet done) at once."""
    done: int = 0
    errors: int = 0
    first_error: str | None = None
    stop_reason: str = ""
    ramp_seconds: float = 0.0
    sessions_seconds: float = 0.0
    ttfd_p50: float = float("nan")
    ttfd_p99: float = float("nan")
    ttfd_max: float = float("nan")
    ttfd_by_thousand: list[tuple[int, float, float]] = field(default_factory=list)
    """(thousand, p50 ms, p99 ms) of the time to first delta of the streams opened in that thousand."""
    probe_ttfd: list[float] = field(default_factory=list)
    """Time to first delta (ms) of PROBES new streams opened one by one at the plateau."""
    probe_timeouts: int = 0
    rss_baseline_mb: float = 0.0
    rss_plateau_mb: float = 0.0
    rss_peak_mb: float = 0.0
    cpu_plateau_percent: float = 0.0
    """botline's CPU use while the streams are held open (one word per stream every word_interval s)."""
    rss_per_stream_kb: float = 0.0
    fds_plateau: int = 0
    upstream_open_plateau: int = 0
    samples: list[tuple[float, int, float]] = field(default_factory=list)
    """(seconds since ramp start, streams open, botline RSS MiB)."""
    drain_seconds: float = 0.0
    cpu_seconds_ramp: float = 0.0
    load_average: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


class _Streams:
    def __init__(self, base: str, keys: list[str]) -> None:
        self.base = base
        self.keys = keys
        self.ttfd: list[tuple[int, float]] = []
        self.open = 0
        self.waiting = 0
        self.done = 0
        self.errors = 0
        self.first_error: str | None = None
        self.progress = asyncio.Event()

    async def one(self, http: aiohttp.ClientSession, index: int) -> None:
        """One stream; the caller counted it in `waiting` when it created the task."""
        got_first = False
        started = time.perf_counter()
        try:
            async with http.post(api.prompt_url(self.base, self.keys[index], stream=True), data=PROMPT,
                                 headers=JSON_HEADERS) as response:
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {(await response.read())[:200]!r}")
                async for line in response.content:
                    if not got_first and line.startswith(b"event: delta"):
                        got_first = True
                        self.ttfd.append((index, time.perf_counter() - started))
                        self.waiting -= 1
                        self.open += 1
                        self.progress.set()
                    elif line.startswith(b"event: done"):
                        self.done += 1
                    elif line.startswith(b"event: error"):
                        raise RuntimeError("event: error")
        except (TimeoutError, aiohttp.ClientError, RuntimeError, asyncio.CancelledError) as exc:
            if not isinstance(exc, asyncio.CancelledError):
                loadgen.note_error(self, loadgen.failure(exc))
        finally:
            if got_first:
                self.open -= 1
            else:
                self.waiting -= 1
            self.progress.set()


async def _measure_streams(botline: servers.Server, slow: servers.Server, plan: StreamPlan, result: StreamResult,
                           log: Any) -> None:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        started = time.perf_counter()
        client_id = await api.create_client(http, botline.base_url)
        sessions = await api.create_sessions(http, botline.base_url, client_id, plan.streams + PROBES,
                                             concurrency=SESSION_CONCURRENCY)
        probe_keys = [s["accessKey"] for s in sessions[plan.streams:]]
        sessions = sessions[:plan.streams]
        result.sessions_seconds = round(time.perf_counter() - started, 1)
        log(f"  {len(sessions)} sessions created in {result.sessions_seconds} s")
        await asyncio.sleep(1.0)
        result.rss_baseline_mb = round(servers.rss_mb(botline.pid), 1)
        streams = _Streams(botline.base_url, [s["accessKey"] for s in sessions])
        tasks: list[asyncio.Task[None]] = []
        cpu0 = servers.cpu_seconds(botline.pid)
        ramp_start = time.perf_counter()
        last_progress = ramp_start
        last_sample = 0.0
        launched = 0
        opened_before = 0
        while True:
            now = time.perf_counter()
            if now - last_sample >= 0.5:
                last_sample = now
                result.samples.append((round(now - ramp_start, 1), streams.open, round(servers.rss_mb(botline.pid), 1)))
                result.peak_open = max(result.peak_open, streams.open)
            if len(streams.ttfd) > opened_before:
                opened_before, last_progress = len(streams.ttfd), now
            if len(streams.ttfd) + streams.errors >= plan.streams and launched >= plan.streams:
                result.stop_reason = "all streams open"
                break
            if now - ramp_start > plan.ramp_seconds:
                result.stop_reason = f"ramp time limit ({plan.ramp_seconds:.0f} s)"
                break
            if now - last_progress > plan.stall_seconds:
                result.stop_reason = (f"stalled: no new first delta for {plan.stall_seconds:.0f} s with "
                                      f"{streams.waiting} streams waiting")
                break
            while launched < plan.streams and streams.waiting < RAMP_PENDING:
                streams.waiting += 1
                tasks.append(asyncio.create_task(streams.one(http, launched)))
                launched += 1
            streams.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(streams.progress.wait(), 0.1)
        result.ramp_seconds = round(time.perf_counter() - ramp_start, 1)
        result.launched = launched
        result.cpu_seconds_ramp = round(servers.cpu_seconds(botline.pid) - cpu0, 1)
        log(f"  ramp: {len(streams.ttfd)} of {launched} launched streams open after {result.ramp_seconds} s "
            f"({result.stop_reason}); RSS {servers.rss_mb(botline.pid):.0f} MiB")
        plateau: list[float] = []
        cpu_start, plateau_start = servers.cpu_seconds(botline.pid), time.perf_counter()
        plateau_end = plateau_start + plan.plateau_seconds
        while time.perf_counter() < plateau_end:
            plateau.append(servers.rss_mb(botline.pid))
            result.peak_open = max(result.peak_open, streams.open)
            await asyncio.sleep(0.25)
        result.cpu_plateau_percent = round(100 * (servers.cpu_seconds(botline.pid) - cpu_start)
                                           / (time.perf_counter() - plateau_start), 1)
        result.rss_plateau_mb = round(statistics.median(plateau), 1)
        result.fds_plateau = servers.open_fds(botline.pid)
        async with http.get(f"{slow.base_url}/stats") as response:
            result.upstream_open_plateau = int((await response.json())["open"])
        result.opened = len(streams.ttfd)
        probes = _Streams(botline.base_url, probe_keys)
        for index in range(PROBES):
            probes.waiting += 1
            task = asyncio.create_task(probes.one(http, index))
            tasks.append(task)
            probe_start = time.perf_counter()
            while len(probes.ttfd) <= index and not task.done() and time.perf_counter() - probe_start < PROBE_TIMEOUT:
                probes.progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(probes.progress.wait(), 0.05)
            if len(probes.ttfd) <= index:
                result.probe_timeouts += 1
                break  # the next ones would wait the same way
        result.probe_ttfd = [_ms(t) for _, t in probes.ttfd]
        log(f"  plateau: {streams.open} open, RSS {result.rss_plateau_mb} MiB, {result.fds_plateau} fds, "
            f"{result.upstream_open_plateau} upstream streams open")
        drain_start = time.perf_counter()
        async with http.post(f"{slow.base_url}/release") as response:
            await response.read()
        _, late = await asyncio.wait(tasks, timeout=plan.drain_seconds) if tasks else (set(), set())
        result.drain_seconds = round(time.perf_counter() - drain_start, 1)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        result.rss_peak_mb = round(servers.peak_rss_mb(botline.pid), 1)
        result.done = streams.done
        result.errors = streams.errors + len(late)
        result.first_error = streams.first_error or (f"{len(late)} streams not done after the drain" if late else None)
        ttfd = [t for _, t in streams.ttfd]
        if ttfd:
            result.ttfd_p50, result.ttfd_p99 = _ms(percentile(ttfd, 0.5)), _ms(percentile(ttfd, 0.99))
            result.ttfd_max = _ms(max(ttfd))
            by_k: dict[int, list[float]] = {}
            for index, t in streams.ttfd:
                by_k.setdefault(index // 1000, []).append(t)
            result.ttfd_by_thousand = [(k, _ms(percentile(v, 0.5)), _ms(percentile(v, 0.99)))
                                       for k, v in sorted(by_k.items())]
        if result.opened:
            result.rss_per_stream_kb = round(1024 * (result.rss_plateau_mb - result.rss_baseline_mb) / result.opened, 1)
        log(f"  drain: {result.done} done in {result.drain_seconds} s; errors {result.errors}")


def run_streams(*, quick: bool = False, log: Any = print, streams: int | None = None,
                levers: str | None = None) -> StreamResult:
    plan = STREAMS_QUICK if quick else STREAMS_FULL
    if streams:
        plan = StreamPlan(**{**asdict(plan), "streams": streams})
    nofile = servers.raise_nofile(2 * plan.streams + 4096)
    fits = (nofile - NOFILE_MARGIN) // 2 - PROBES
    result = StreamResult(plan=asdict(plan), levers=levers, target=plan.streams, nofile_limit=nofile)
    if fits < plan.streams:
        log(f"  the open-files limit is {nofile} (hard limit; raising it needs CAP_SYS_RESOURCE): botline needs "
            f"2 per stream, so at most {fits} streams are opened instead of {plan.streams}")
        plan = StreamPlan(**{**asdict(plan), "streams": fits})
        result.capped_by_nofile = True
        result.plan = asdict(plan)
    result.load_average["start"] = load_average()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(servers.workdir("botline-bench-sse-"))
        slow = stack.enter_context(servers.module_server(
            "slow_llm", "bench.slow_llm", ["--interval", str(plan.word_interval),
                                           "--max-seconds", str(plan.ramp_seconds + 60)],
            tmp, ready_path="/v1/models", nofile=nofile))
        overrides = {"server": {"shutdown_grace_seconds": 3}}
        botline = stack.enter_context(servers.botline(tmp, slow, name="botline-sse", overrides=overrides,
                                                      nofile=nofile, levers=levers))
        log(f"SSE streams: slow LLM pid {slow.pid}; botline pid {botline.pid} (open files limit {nofile})"
            + (f" levers {levers}" if levers else ""))
        uvloop_run(_measure_streams(botline, slow, plan, result, log))
    result.seconds = round(time.perf_counter() - started, 1)
    result.load_average["end"] = load_average()
    return result


def streams_table(result: StreamResult) -> str:
    target = f"{result.target:,}"
    if result.capped_by_nofile:
        target += f" (capped at {result.plan['streams']:,} by the open-files limit {result.nofile_limit:,})"
    lines = [
        "| target | open at once (first delta received) | stopped because | ramp | botline RSS before | "
        "**RSS at plateau** | RSS per stream | peak RSS | fds | time to first delta p50 / p99 / max | "
        "done after release | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {target} | **{result.peak_open:,}** (of {result.launched:,} launched) | {result.stop_reason} | "
        f"{result.ramp_seconds} s | {result.rss_baseline_mb:.0f} MiB | **{result.rss_plateau_mb:.0f} MiB** | "
        f"{result.rss_per_stream_kb:.0f} KiB | {result.rss_peak_mb:.0f} MiB | {result.fds_plateau:,} | "
        f"{result.ttfd_p50:.0f} / {result.ttfd_p99:.0f} / {result.ttfd_max:.0f} ms | {result.done:,} in "
        f"{result.drain_seconds} s | {result.errors} |",
    ]
    if result.probe_ttfd or result.probe_timeouts:
        probe = sorted(result.probe_ttfd)
        lines.append(f"\n**time to first delta of a new stream with {result.peak_open:,} open**, {len(probe)} probes "
                     f"opened one at a time: p50 {percentile(probe, 0.5):.1f} ms, max "
                     f"{max(probe) if probe else float('nan'):.1f} ms"
                     + (f"; {result.probe_timeouts} got no first delta within {PROBE_TIMEOUT:.0f} s (probing stopped)"
                        if result.probe_timeouts else ""))
    if result.ttfd_by_thousand:
        lines.append(f"time to first delta during the ramp ({RAMP_PENDING} opening at a time), by thousand opened "
                     "(p50 / p99 ms): " + ", ".join(
            f"{k * 1000}+: {p50:.0f} / {p99:.0f}" for k, p50, p99 in result.ttfd_by_thousand))
    lines.append(f"botline CPU during the ramp: {result.cpu_seconds_ramp} s; "
                 f"at the plateau {result.cpu_plateau_percent} % "
                 f"of one core (one word per stream every {result.plan['word_interval']:.0f} s); "
                 "upstream streams open at the plateau: "
                 f"{result.upstream_open_plateau:,}; sessions created in {result.sessions_seconds} s.")
    if result.first_error:
        lines.append(f"first error: {result.first_error}")
    if result.levers:
        lines.append(f"botline with bench.levers {result.levers}")
    lines.append(_load_line(result.load_average))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webchat", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=("prompts", "streams"), action="append")
    parser.add_argument("--streams", type=int, help="streams to open (default 10,000; 500 with --quick)")
    parser.add_argument("--store", choices=("sqlite", "redis"), action="append", help="prompts: only this store")
    parser.add_argument("--levers", help="botline with these bench.levers (what-if)")
    parser.add_argument("--what-if", action="append", default=[],
                        help="prompts: add a SQLite botline with these bench.levers to the same rounds (repeatable)")
    parser.add_argument("--profile", nargs="*", choices=("sqlite", "redis"),
                        help="py-spy these botlines at 50 clients (no value: sqlite)")
    parser.add_argument("--baseline", type=Path,
                        help="prompts: also run botlines importing this src folder (e.g. an older commit's)")
    args = parser.parse_args()
    out_dir = servers.RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    for part in args.part or ("prompts", "streams"):
        if part == "prompts":
            prompts = run_prompts(quick=args.quick, stores=tuple(args.store or ("sqlite", "redis")), levers=args.levers,
                                  with_profile=args.profile is not None, out_dir=out_dir, what_ifs=tuple(args.what_if),
                                  baseline=args.baseline, profiled=tuple(args.profile or ("sqlite",)))
            print(prompts_table(prompts))
            for summary in prompts.profiles:
                print(profile.report(summary))
            raw: dict[str, Any] = asdict(prompts)
        else:
            sse = run_streams(quick=args.quick, streams=args.streams, levers=args.levers)
            print(streams_table(sse))
            raw = asdict(sse)
        servers.save_result(f"webchat_{part}", raw)


if __name__ == "__main__":
    main()
