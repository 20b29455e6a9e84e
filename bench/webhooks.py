"""Messaging webhooks (issue 4): ack latency at a fixed inbound rate, and inbound-to-reply throughput.

OS processes on 127.0.0.1: the zero-latency fake LLM, bench/fake_zapi.py (a fast Z-API send-text that
records when each reply arrives), `botline serve` with `providers.zapi.api_url` pointing at it (SQLite,
then Redis under a unique key prefix deleted afterwards), and this process as an open-loop load
generator. Setup through the management API: chat client -> PUT .../integrations (Zapi) -> webhookUrl.

Open loop: Z-API `ReceivedCallback` payloads (tests/emulators/zapi.py's builder; unique messageIds,
text "m<seq>", PHONES distinct senders in turn) are POSTed to the webhookUrl at RATE per second for a
fixed time, each at its scheduled instant whatever the previous ones are doing. The ack latency is
measured from the scheduled instant to the end of the answer (so a stalled sender is not hidden).

Two phases per store:
- "with replies": every message runs the pipeline (record -> ack -> turn -> send). Messages of one
  chat that arrive while its turn runs are answered together in the next turn (as designed), so the
  fake LLM's echo of the last user message lists every "m<seq>" a reply answers: from the replies the
  fake Z-API received we get, per message, when its answer was delivered (inbound-to-reply latency),
  and the throughput in messages answered per second.
- "ack only": a second chat client with messageDebounceInterval 60 s, so no turn starts during the
  window: the cost of the acknowledgement path alone (token check, parse, durable record, dedupe).

    .venv/bin/python -m bench.webhooks [--quick] [--store sqlite|redis] [--rate 500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson

from bench import api, loadgen, servers
from bench.webchat import _load_line, _ms, load_average, uvloop_run

PHONES = 200
RATE = 500
INSTANCE_ID = "3C0FA2B9D4E5F60718293A4B5C6D7E8F"
INSTANCE_TOKEN = "A1B2C3D4E5F60718293A4B5C"
TICK = 0.002
"""The sender wakes up every TICK and sends everything that is due."""
SEQ = re.compile(r"m(\d+)")


@dataclass(frozen=True)
class Plan:
    seconds: float
    ack_only_seconds: float
    drain_seconds: float
    rate: int = RATE


FULL = Plan(seconds=10, ack_only_seconds=5, drain_seconds=30)
QUICK = Plan(seconds=3, ack_only_seconds=2, drain_seconds=15)


@dataclass
class Phase:
    store: str
    phase: str
    rate: int
    seconds: float
    sent: int = 0
    acked: int = 0
    errors: int = 0
    first_error: str | None = None
    ack_p50: float = float("nan")
    ack_p99: float = float("nan")
    ack_max: float = float("nan")
    send_lag_p99: float = float("nan")
    """How late the sender itself was (scheduled instant -> request start), p99 ms."""
    achieved_rate: float = 0.0
    replies: int = 0
    answered: int = 0
    """Messages whose "m<seq>" appears in a reply the fake Z-API received."""
    reply_p50: float = float("nan")
    reply_p99: float = float("nan")
    """Inbound-to-reply latency (scheduled send -> reply received at the fake provider), ms."""
    answered_per_second: float = 0.0
    """Messages answered / (last reply - first message), over the whole run including the drain."""
    replies_per_second_during_load: float = 0.0
    all_answered_after: float = float("nan")
    """Seconds from the first message until every message was answered (nan: not within the drain)."""
    cpu_ms_per_message: float = 0.0
    botline_log_tail: list[str] = field(default_factory=list)
    """The end of botline's output when something failed."""


@dataclass
class Result:
    plan: dict[str, Any]
    phases: list[Phase] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    load_average: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _payloads(first_seq: int, n: int) -> list[bytes]:
    from tests.emulators.zapi import FakeZapi

    builder = FakeZapi(instance_id=INSTANCE_ID, instance_token=INSTANCE_TOKEN)
    out = []
    for i in range(first_seq, first_seq + n):
        phone = f"55119{i % PHONES:08d}"
        payload = builder.text_message(phone, f"m{i}", message_id=f"3EB0BENCH{i:012d}", name=f"User {i % PHONES}")
        out.append(orjson.dumps(payload))
    return out


async def _open_loop(http: aiohttp.ClientSession, url: str, payloads: list[bytes], rate: int,
                     phase: Phase) -> dict[int, float]:
    """Sends payloads[i] at t0 + i / rate; returns {index: scheduled monotonic time}."""
    acks: list[float] = []
    lags: list[float] = []
    scheduled: dict[int, float] = {}
    headers = {"Content-Type": "application/json"}

    async def one(index: int, at: float) -> None:
        lags.append(time.monotonic() - at)
        if error := await loadgen.post(http, url, payloads[index], headers):
            loadgen.note_error(phase, error)
            return
        acks.append(time.monotonic() - at)

    tasks: list[asyncio.Task[None]] = []
    t0 = time.monotonic() + 0.05
    sent = 0
    while sent < len(payloads):
        now = time.monotonic()
        while sent < len(payloads) and t0 + sent / rate <= now:
            at = t0 + sent / rate
            scheduled[sent] = at
            tasks.append(asyncio.create_task(one(sent, at)))
            sent += 1
        await asyncio.sleep(TICK)
    await asyncio.wait(tasks, timeout=30)
    wall = time.monotonic() - t0
    phase.sent = sent
    phase.acked = len(acks)
    phase.achieved_rate = round(len(acks) / wall, 1) if wall else 0.0
    if acks:
        ordered = sorted(acks)
        phase.ack_p50 = _ms(statistics.median(ordered))
        phase.ack_p99 = _ms(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))])
        phase.ack_max = _ms(ordered[-1])
        lag = sorted(lags)
        phase.send_lag_p99 = _ms(lag[min(len(lag) - 1, int(0.99 * len(lag)))])
    return scheduled


async def _sends(http: aiohttp.ClientSession, zapi: servers.Server, since: int) -> list[tuple[float, str, str]]:
    async with http.get(f"{zapi.base_url}/stats", params={"since": str(since)}) as response:
        return [(float(t), str(phone), str(text)) for t, phone, text in orjson.loads(await response.read())["sends"]]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _phase_with_replies(http: aiohttp.ClientSession, store: str, botline: servers.Server,
                              zapi: servers.Server, plan: Plan, log: Any) -> Phase:
    client_id = await api.create_client(http, botline.base_url)
    saved = await api.save_integration(http, botline.base_url, client_id, "Zapi",
                                       {"instanceId": INSTANCE_ID, "instanceToken": INSTANCE_TOKEN})
    n = int(plan.rate * plan.seconds)
    payloads = _payloads(1_000_000, n)
    phase = Phase(store=store, phase="with replies", rate=plan.rate, seconds=plan.seconds)
    before = len(await _sends(http, zapi, 0))
    cpu0 = servers.cpu_seconds(botline.pid)
    scheduled = await _open_loop(http, saved["webhookUrl"], payloads, plan.rate, phase)
    load_end = time.monotonic()
    first = min(scheduled.values())
    answered: dict[int, float] = {}
    replies: list[tuple[float, str, str]] = []
    drain_deadline = time.monotonic() + plan.drain_seconds
    last_progress = time.monotonic()
    while time.monotonic() < drain_deadline:
        fresh = await _sends(http, zapi, before + len(replies))
        if fresh:
            last_progress = time.monotonic()
        for at, _, text in fresh:
            replies.append((at, _, text))
            for match in SEQ.finditer(text):
                index = int(match.group(1)) - 1_000_000
                if 0 <= index < n and index not in answered:
                    answered[index] = at
        if len(answered) >= phase.acked:
            break
        if time.monotonic() - last_progress > 5:
            break
        await asyncio.sleep(0.2)
    phase.cpu_ms_per_message = round(1000 * (servers.cpu_seconds(botline.pid) - cpu0) / max(n, 1), 2)
    phase.replies = len(replies)
    phase.answered = len(answered)
    if answered:
        latency = [answered[i] - scheduled[i] for i in answered]
        phase.reply_p50 = _ms(_pct(latency, 0.5))
        phase.reply_p99 = _ms(_pct(latency, 0.99))
        last = max(answered.values())
        phase.answered_per_second = round(len(answered) / (last - first), 1)
        during = [at for at, _, _ in replies if at <= load_end]
        phase.replies_per_second_during_load = round(len(during) / (load_end - first), 1)
        if len(answered) >= phase.acked:
            phase.all_answered_after = round(last - first, 1)
    log(f"  {store:6} with replies: {phase.acked}/{phase.sent} acked at {phase.achieved_rate}/s, ack p50 "
        f"{phase.ack_p50} ms p99 {phase.ack_p99} ms; {phase.replies} replies answering {phase.answered} messages, "
        f"reply p50 {phase.reply_p50} ms p99 {phase.reply_p99} ms; {phase.answered_per_second} answered/s")
    return phase


async def _phase_ack_only(http: aiohttp.ClientSession, store: str, botline: servers.Server, plan: Plan,
                          log: Any) -> Phase:
    client_id = await api.create_client(http, botline.base_url, messageDebounceInterval=60)
    saved = await api.save_integration(http, botline.base_url, client_id, "Zapi",
                                       {"instanceId": INSTANCE_ID, "instanceToken": INSTANCE_TOKEN})
    n = int(plan.rate * plan.ack_only_seconds)
    phase = Phase(store=store, phase="ack only (turns deferred)", rate=plan.rate, seconds=plan.ack_only_seconds)
    cpu0 = servers.cpu_seconds(botline.pid)
    await _open_loop(http, saved["webhookUrl"], _payloads(2_000_000, n), plan.rate, phase)
    phase.cpu_ms_per_message = round(1000 * (servers.cpu_seconds(botline.pid) - cpu0) / max(n, 1), 2)
    log(f"  {store:6} ack only: {phase.acked}/{phase.sent} acked at {phase.achieved_rate}/s, ack p50 "
        f"{phase.ack_p50} ms p99 {phase.ack_p99} ms max {phase.ack_max} ms")
    return phase


async def _measure(store: str, botline: servers.Server, zapi: servers.Server, plan: Plan, log: Any) -> list[Phase]:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        ack_only = await _phase_ack_only(http, store, botline, plan, log)
        with_replies = await _phase_with_replies(http, store, botline, zapi, plan, log)
    for phase in (with_replies, ack_only):
        if phase.errors:
            phase.botline_log_tail = servers.log_lines(botline, 20)
    return [with_replies, ack_only]


def run(*, quick: bool = False, log: Any = print, stores: tuple[str, ...] = ("sqlite", "redis"),
        rate: int | None = None, seconds: float | None = None, levers: str | None = None) -> Result:
    plan = QUICK if quick else FULL
    if rate or seconds:
        plan = Plan(**{**asdict(plan), **({"rate": rate} if rate else {}), **({"seconds": seconds} if seconds else {})})
    result = Result(plan=asdict(plan))
    result.load_average["start"] = load_average()
    started = time.perf_counter()
    for store in stores:
        with contextlib.ExitStack() as stack:
            if store == "redis":
                if not servers.redis_available():
                    result.skipped["redis"] = f"no Redis answers at {servers.REDIS_URL}"
                    continue
                overrides: dict[str, Any] = stack.enter_context(servers.redis_storage("webhooks"))
            else:
                overrides = {}
            tmp = stack.enter_context(servers.workdir("botline-bench-webhooks-"))
            fake = stack.enter_context(servers.fake_llm(tmp))
            zapi = stack.enter_context(servers.module_server("fake_zapi", "bench.fake_zapi", [], tmp,
                                                             ready_path="/stats"))
            overrides = {**overrides, "providers": {"zapi": {"api_url": zapi.base_url}},
                         "server": {"shutdown_grace_seconds": 2}}
            botline = stack.enter_context(servers.botline(tmp, fake, name=f"botline-{store}", overrides=overrides,
                                                          levers=levers))
            log(f"webhooks {store}: botline pid {botline.pid}, fake Z-API pid {zapi.pid}, fake LLM pid {fake.pid}")
            result.phases += uvloop_run(_measure(store, botline, zapi, plan, log))
    result.seconds = round(time.perf_counter() - started, 1)
    result.load_average["end"] = load_average()
    return result


def _f(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"  # nan -> "-"


def table(result: Result) -> str:
    lines = [
        "| store | phase | sent at | acked | **ack p50** | **ack p99** | ack max | sender lag p99 | replies | "
        "messages answered | inbound-to-reply p50 / p99 | **answered/s** | replies/s during load | "
        "all answered after | botline CPU per message | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result.phases:
        replies = p.phase == "with replies"
        lines.append(
            f"| {p.store} | {p.phase} | {p.rate}/s for {p.seconds:.0f} s | {p.acked:,}/{p.sent:,} | "
            f"**{_f(p.ack_p50, 2)} ms** | **{_f(p.ack_p99, 2)} ms** | {_f(p.ack_max)} ms | "
            f"{_f(p.send_lag_p99, 2)} ms | "
            + (f"{p.replies:,} | {p.answered:,} | {_f(p.reply_p50, 0)} / {_f(p.reply_p99, 0)} ms | "
               f"**{_f(p.answered_per_second, 0)}** | {_f(p.replies_per_second_during_load, 0)} | "
               f"{_f(p.all_answered_after)} s | " if replies else "- | - | - | - | - | - | ")
            + f"{p.cpu_ms_per_message:.2f} ms | {p.errors} |"
        )
    for p in result.phases:
        if p.first_error:
            lines.append(f"\n{p.store} {p.phase}: {p.errors} errors, first: {p.first_error}")
            lines += [f"    {line[:300]}" for line in p.botline_log_tail[-3:]]
    for store, why in result.skipped.items():
        lines.append(f"\n{store}: skipped ({why})")
    lines.append(_load_line(result.load_average))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--store", choices=("sqlite", "redis"), action="append")
    parser.add_argument("--rate", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--levers", help="botline with these bench.levers (what-if)")
    args = parser.parse_args()
    result = run(quick=args.quick, stores=tuple(args.store or ("sqlite", "redis")), rate=args.rate,
                 seconds=args.seconds, levers=args.levers)
    print(table(result))
    servers.save_result("webhooks", asdict(result))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
