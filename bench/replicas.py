"""Scaling: throughput with 1, 2 and 3 botline replicas on one Redis (issue 6 §5).

OS processes on 127.0.0.1: the zero-latency fake LLM, bench/fake_zapi.py, MAX_REPLICAS real `botline
serve` processes sharing one Redis under one unique key prefix (deleted afterwards), and this process as
the load generator. All replicas run for the whole benchmark; a configuration with N replicas sends
its load to the first N only (an idle replica costs nothing measurable), so the rounds can interleave
N = 1, 2, 3 and every N shares the machine's drift.

- web chat: closed loop, CLIENTS clients, non-streaming prompts; sessions are sticky to a replica
  (docs/deploy.md: route /api/v1/public/chat-clients/{accessKey} by access key), client i on replica
  i mod N, a fresh session every 10 prompts (as in bench.webchat).
- inbound webhooks: closed loop over USERS chats: each chat sends its next Z-API message when the
  answer to the previous one reached the fake Z-API; messages go round-robin over the N replicas (any
  replica takes any webhook). Fresh phone numbers every batch (6 messages per chat in a full round),
  so history length stays as in a short conversation.

Per configuration: the median throughput over rounds, latency p50/p99, and CPU per request of the
botline replicas, Redis, the fake LLM (+ fake Z-API) and the load generator: on a 2-core machine
they all share the same two cores, which caps what more replicas can add.

    .venv/bin/python -m bench.replicas [--quick] [--part webchat|webhooks] [--replicas 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from bench import api, loadgen, servers, webhooks
from bench.loadgen import percentile
from bench.webchat import PROMPTS_PER_SESSION, SessionPool, _load_line, _ms, load_average, prompt_batch, uvloop_run

MAX_REPLICAS = 3
CLIENTS = 60
"""Web chat clients (divisible by 1, 2 and 3, so every replica gets the same number)."""
USERS = 150
"""Chats writing webhooks at once."""
POLL = 0.01
"""How often the fake Z-API's record of replies is read (seconds)."""


@dataclass(frozen=True)
class Plan:
    rounds: int
    prompts: int
    """Web chat prompts per configuration per round."""
    messages: int
    """Webhook messages per configuration per round, from USERS chats."""
    warmup_prompts: int = 300
    warmup_messages: int = 300


FULL = Plan(rounds=3, prompts=1500, messages=6 * USERS)
QUICK = Plan(rounds=1, prompts=300, messages=600, warmup_prompts=60, warmup_messages=150)


@dataclass
class Cpu:
    """CPU seconds by party, read before and after a batch."""

    botline: float = 0.0
    redis: float = 0.0
    fakes: float = 0.0
    loadgen: float = 0.0

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(*(a - b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True)))

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True)))


@dataclass
class Cell:
    part: str
    replicas: int
    requests: int
    per_second: float
    per_second_rounds: list[float]
    p50: float
    p99: float
    cpu_ms: dict[str, float]
    """CPU per request (ms) by party: botline (all replicas), redis, fakes, loadgen, total."""
    errors: int = 0
    first_error: str | None = None


@dataclass
class Result:
    plan: dict[str, Any]
    cells: list[Cell] = field(default_factory=list)
    skipped: str | None = None
    redis_pid: int | None = None
    load_average: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    cpu: Cpu = field(default_factory=Cpu)
    errors: int = 0
    first_error: str | None = None


class Meter:
    """Reads the CPU time of every party of the benchmark."""

    def __init__(self, replicas: list[servers.Server], fakes: list[servers.Server], redis_pid: int | None) -> None:
        self._replicas = replicas
        self._fakes = fakes
        self._redis = redis_pid

    def read(self) -> Cpu:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return Cpu(
            botline=sum(servers.cpu_seconds(r.pid) for r in self._replicas),
            redis=servers.cpu_seconds(self._redis) if self._redis else float("nan"),
            fakes=sum(servers.cpu_seconds(f.pid) for f in self._fakes),
            loadgen=own.ru_utime + own.ru_stime,
        )


def _redis_pid() -> int | None:
    """The local Redis server's pid (its CPU is part of every request's cost), when it runs on this host."""
    import redis

    client = redis.Redis.from_url(servers.REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        pid = int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None
    finally:
        client.close()
    return None if math.isnan(servers.cpu_seconds(pid)) else pid  # nan: not a process of this host


# --------------------------------------------------------------------------- web chat


async def _webchat_setup(http: aiohttp.ClientSession, replicas: list[servers.Server], plan: Plan) -> list[SessionPool]:
    """One session pool per replica, all created through replica 0 (the store is shared)."""
    base = replicas[0].base_url
    client_id = await api.create_client(http, base)
    # replica 1 serves all of N = 1, half of N = 2 and a third of N = 3 (< 2x one configuration); every
    # client of every batch starts on a fresh session
    prompts = 2 * (plan.warmup_prompts + plan.rounds * plan.prompts)
    wanted = prompts // PROMPTS_PER_SESSION + (plan.rounds + 1) * MAX_REPLICAS * CLIENTS
    sessions = await api.create_sessions(http, base, client_id, wanted * len(replicas))
    keys = [s["accessKey"] for s in sessions]
    return [SessionPool(keys[i * wanted:(i + 1) * wanted]) for i in range(len(replicas))]


async def _webchat_batch(http: aiohttp.ClientSession, replicas: list[servers.Server], pools: list[SessionPool],
                         n: int) -> Outcome:
    """`n` prompts from CLIENTS clients, spread evenly over `replicas` (sticky sessions)."""
    shares = [prompt_batch(http, r.base_url, pools[i], r.pid, n=n // len(replicas),
                           concurrency=CLIENTS // len(replicas)) for i, r in enumerate(replicas)]
    started = time.perf_counter()
    batches = await asyncio.gather(*shares)
    outcome = Outcome(wall=time.perf_counter() - started)
    for batch in batches:
        outcome.latencies += batch.latencies
        outcome.errors += batch.errors
        outcome.first_error = outcome.first_error or batch.first_error
    return outcome


# --------------------------------------------------------------------------- webhooks


class Replies:
    """Follows the fake Z-API's record of sends and resolves the waiter of each answered message."""

    def __init__(self, http: aiohttp.ClientSession, zapi: servers.Server) -> None:
        self._http = http
        self._zapi = zapi
        self._seen = 0
        self.waiting: dict[int, asyncio.Future[float]] = {}

    async def start(self) -> None:
        async with self._http.get(f"{self._zapi.base_url}/stats", params={"since": "0"}) as response:
            self._seen = int(orjson.loads(await response.read())["count"])

    async def follow(self) -> None:
        while True:
            async with self._http.get(f"{self._zapi.base_url}/stats", params={"since": str(self._seen)}) as response:
                sends = orjson.loads(await response.read())["sends"]
            self._seen += len(sends)
            for at, _, text in sends:
                for match in webhooks.SEQ.finditer(text):
                    waiter = self.waiting.pop(int(match.group(1)), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(float(at))
            await asyncio.sleep(POLL)


@dataclass
class Inbound:
    """The webhook path of the benchmark's Z-API integration (the same on every replica)."""

    path: str
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    rounds: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


async def _webhooks_setup(http: aiohttp.ClientSession, replicas: list[servers.Server]) -> Inbound:
    client_id = await api.create_client(http, replicas[0].base_url)
    saved = await api.save_integration(http, replicas[0].base_url, client_id, "Zapi",
                                       {"instanceId": webhooks.INSTANCE_ID, "instanceToken": webhooks.INSTANCE_TOKEN})
    return Inbound(urlsplit(saved["webhookUrl"]).path)


async def _webhooks_batch(http: aiohttp.ClientSession, replicas: list[servers.Server], zapi: servers.Server,
                          inbound: Inbound, n: int) -> Outcome:
    """`n` messages from up to USERS chats, each waiting for its answer before the next; round-robin replicas."""
    from tests.emulators.zapi import FakeZapi

    builder = FakeZapi(instance_id=webhooks.INSTANCE_ID, instance_token=webhooks.INSTANCE_TOKEN)
    round_number = next(inbound.rounds)
    users = min(USERS, n)
    replies = Replies(http, zapi)
    await replies.start()
    follower = asyncio.create_task(replies.follow())
    outcome = Outcome()
    remaining = n
    headers = {"Content-Type": "application/json"}

    async def chat(user: int) -> None:
        nonlocal remaining
        phone = f"55{round_number:04d}{user:06d}"
        while remaining > 0:
            remaining -= 1
            seq = next(inbound.seq)
            payload = orjson.dumps(builder.text_message(phone, f"m{seq}", message_id=f"3EB0REPL{seq:012d}"))
            answered = asyncio.get_running_loop().create_future()
            replies.waiting[seq] = answered
            started = time.monotonic()
            replica = replicas[seq % len(replicas)]
            if error := await loadgen.post(http, replica.base_url + inbound.path, payload, headers):
                replies.waiting.pop(seq, None)
                loadgen.note_error(outcome, error)
                continue
            try:
                outcome.latencies.append(await asyncio.wait_for(answered, 30) - started)
            except TimeoutError:
                replies.waiting.pop(seq, None)
                loadgen.note_error(outcome, f"no answer to m{seq} within 30 s")

    started = time.perf_counter()
    try:
        await asyncio.gather(*(chat(u) for u in range(users)))
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    outcome.wall = time.perf_counter() - started
    return outcome


# --------------------------------------------------------------------------- both


Batch = Callable[[list[servers.Server], int], Awaitable[Outcome]]


async def _rounds(part: str, batch: Batch, replicas: list[servers.Server], meter: Meter, n: int, warmup: int,
                  rounds: int, log: Any) -> list[Cell]:
    counts = list(range(1, len(replicas) + 1))
    for count in counts:
        await batch(replicas[:count], warmup)
    outcomes: dict[int, list[Outcome]] = {count: [] for count in counts}
    for round_number in range(rounds):
        shift = round_number % len(counts)
        for count in counts[shift:] + counts[:shift]:
            before = meter.read()
            outcome = await batch(replicas[:count], n)
            outcome.cpu = meter.read() - before
            outcomes[count].append(outcome)
    cells = []
    for count in counts:
        done = outcomes[count]
        pooled = [x for o in done for x in o.latencies]
        total = sum(len(o.latencies) for o in done)
        cpu = Cpu()
        for o in done:
            cpu = cpu + o.cpu
        per_request = {name: round(1000 * seconds / max(total, 1), 2) for name, seconds in asdict(cpu).items()}
        per_request["total"] = round(sum(per_request.values()), 2)
        rates = [round(len(o.latencies) / o.wall, 1) for o in done]
        cell = Cell(part=part, replicas=count, requests=total, per_second=round(statistics.median(rates), 1),
                    per_second_rounds=rates, p50=_ms(percentile(pooled, 0.5)), p99=_ms(percentile(pooled, 0.99)),
                    cpu_ms=per_request, errors=sum(o.errors for o in done),
                    first_error=next((o.first_error for o in done if o.first_error), None))
        log(f"  {part:8} {count} replica(s): {cell.per_second:7.1f}/s  p50 {cell.p50:.1f} ms  p99 {cell.p99:.1f} ms  "
            f"CPU/request {per_request}  errors {cell.errors}")
        cells.append(cell)
    return cells


async def _measure(replicas: list[servers.Server], zapi: servers.Server, meter: Meter, plan: Plan,
                   parts: tuple[str, ...], log: Any) -> list[Cell]:
    cells: list[Cell] = []
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        if "webchat" in parts:
            pools = await _webchat_setup(http, replicas, plan)
            index = {r.pid: i for i, r in enumerate(replicas)}

            async def webchat(subset: list[servers.Server], n: int) -> Outcome:
                return await _webchat_batch(http, subset, [pools[index[r.pid]] for r in subset], n)

            cells += await _rounds("web chat", webchat, replicas, meter, plan.prompts, plan.warmup_prompts,
                                   plan.rounds, log)
        if "webhooks" in parts:
            inbound = await _webhooks_setup(http, replicas)

            async def messages(subset: list[servers.Server], n: int) -> Outcome:
                return await _webhooks_batch(http, subset, zapi, inbound, n)

            cells += await _rounds("webhooks", messages, replicas, meter, plan.messages, plan.warmup_messages,
                                   plan.rounds, log)
    return cells


PARTS = ("webchat", "webhooks")


def run(*, quick: bool = False, log: Any = print, parts: tuple[str, ...] = PARTS,
        replicas: int = MAX_REPLICAS) -> Result:
    plan = QUICK if quick else FULL
    result = Result(plan=asdict(plan))
    result.load_average["start"] = load_average()
    started = time.perf_counter()
    if not servers.redis_available():
        result.skipped = f"no Redis answers at {servers.REDIS_URL}"
        log(f"replicas skipped: {result.skipped}")
        return result
    result.redis_pid = _redis_pid()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(servers.workdir("botline-bench-replicas-"))
        fake = stack.enter_context(servers.fake_llm(tmp))
        zapi = stack.enter_context(servers.module_server("fake_zapi", "bench.fake_zapi", [], tmp,
                                                         ready_path="/stats"))
        overrides = {**stack.enter_context(servers.redis_storage("replicas")),
                     "providers": {"zapi": {"api_url": zapi.base_url}}, "server": {"shutdown_grace_seconds": 2}}
        started_replicas = [stack.enter_context(servers.botline(tmp, fake, name=f"replica-{i + 1}",
                                                                 overrides=overrides)) for i in range(replicas)]
        log("replicas: " + "; ".join(f"pid {r.pid} :{r.port}" for r in started_replicas)
            + f"; Redis pid {result.redis_pid}; fake LLM pid {fake.pid}; fake Z-API pid {zapi.pid}")
        meter = Meter(started_replicas, [fake, zapi], result.redis_pid)
        result.cells = uvloop_run(_measure(started_replicas, zapi, meter, plan, parts, log))
    result.seconds = round(time.perf_counter() - started, 1)
    result.load_average["end"] = load_average()
    return result


def table(result: Result) -> str:
    if result.skipped:
        return f"replicas: skipped ({result.skipped})"
    lines = ["| load | replicas | requests | **per second** | per round | vs 1 replica | p50 ms | p99 ms | "
             "CPU per request: botline / Redis / fakes / load generator = total | errors |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    base: dict[str, float] = {}
    for c in result.cells:
        base.setdefault(c.part, c.per_second)
        unit = "prompts" if c.part == "web chat" else "messages answered"
        cpu = c.cpu_ms
        lines.append(
            f"| {c.part} | {c.replicas} | {c.requests:,} | **{c.per_second:,.0f}** {unit}/s | "
            f"{' / '.join(f'{x:,.0f}' for x in c.per_second_rounds)} | {c.per_second / base[c.part]:.2f}x | "
            f"{c.p50:.1f} | {c.p99:.1f} | {cpu['botline']:.2f} / {cpu['redis']:.2f} / {cpu['fakes']:.2f} / "
            f"{cpu['loadgen']:.2f} = {cpu['total']:.2f} ms | {c.errors} |")
    for c in result.cells:
        if c.first_error:
            lines.append(f"\n{c.part} x{c.replicas}: {c.errors} errors, first: {c.first_error}")
    lines.append("\nweb chat: closed loop, "
                 f"{CLIENTS} clients, sticky sessions; webhooks: closed loop, {USERS} chats each waiting for its "
                 "answer, round-robin replicas. p50/p99: prompt latency, or webhook sent -> reply at the provider.")
    lines.append(_load_line(result.load_average))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=PARTS, action="append")
    parser.add_argument("--replicas", type=int, default=MAX_REPLICAS)
    args = parser.parse_args()
    result = run(quick=args.quick, parts=tuple(args.part or PARTS), replicas=args.replicas)
    print(table(result))
    servers.save_result("replicas", asdict(result))


if __name__ == "__main__":
    main()
