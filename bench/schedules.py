"""Scheduled continuations (issue 5): 100,000 pending schedules, start-up load, RSS, fire lateness.

1. `botline serve` on an empty SQLite store (the baseline start-up time), the zero-latency fake LLM
   behind it; through the management API: a chat client with allowScheduledContinuations and
   DUE live web chat sessions (one per user). botline is stopped.
2. A helper process (`python -m bench.schedules insert ...`) writes TOTAL one-shot schedules through
   botline's own Store API (`store.schedules.create(ScheduledItem(...))`, committed in batches):
   TOTAL - DUE due at random times 1 to 30 days ahead, and DUE (one per session, target WebChat) all
   due at the same instant T = the restart + LEAD seconds.
3. botline is started again on that file: the time to its "botline is serving" line and to
   /readyz 200 is the load time (the scheduler loads every active item before the server listens),
   compared with the baseline start. RSS after the load. While it runs, GET /healthz every PROBE s
   measures event-loop stalls: the scheduler re-reads every active item every
   scheduler.sync_interval_seconds (30 s by default; SYNC_SECONDS = 10 here so that the run sees one
   resync within its time budget).
4. After T the DUE items fire together; each runs a model turn (fake LLM, zero latency) whose answer is
   appended to its web chat session. botline is stopped and the store is read back:
   - claim lateness = activatedAt - scheduledTime (activatedAt is taken when the activation starts,
     after the claim in the store and the reload of the item, before the model turn),
   - answer lateness = the session's new assistant message createdAt - scheduledTime (includes
     queueing DUE turns at once).

    .venv/bin/python -m bench.schedules [--quick] [--total N] [--due N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench import api, profile, servers
from bench.webchat import _load_line, _ms, load_average, uvloop_run

SYNC_SECONDS = 10
"""scheduler.sync_interval_seconds in the benchmark's config (default 30): the run then sees one resync."""


@dataclass(frozen=True)
class Plan:
    total: int
    due: int
    lead_seconds: float
    """T = the restart + this (when the DUE items fall due)."""
    observe_seconds: float
    """How long at least botline runs after the restart's serving line (past the first resync, SYNC_SECONDS),
    and in any case until every due item has fired (at most 30 s after they fell due)."""


FULL = Plan(total=100_000, due=1_000, lead_seconds=15, observe_seconds=SYNC_SECONDS + 3)
QUICK = Plan(total=10_000, due=100, lead_seconds=6, observe_seconds=SYNC_SECONDS + 2)
PROBE = 0.05
SERVING = b"botline is serving on"
INSERT_BATCH = 5_000


@dataclass
class Start:
    serving_s: float = float("nan")
    """Process start -> the "botline is serving" line (everything loaded, socket listening)."""
    readyz_s: float = float("nan")
    rss_mb: float = float("nan")
    started_at: float = 0.0
    """time.monotonic() when the process was started."""


@dataclass
class Result:
    plan: dict[str, Any]
    levers: str | None = None
    baseline: Start = field(default_factory=Start)
    loaded: Start = field(default_factory=Start)
    insert_seconds: float = 0.0
    db_mb: float = 0.0
    rss_after_fire_mb: float = float("nan")
    fired: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    claim_p50: float = float("nan")
    claim_p99: float = float("nan")
    claim_max: float = float("nan")
    answer_p50: float = float("nan")
    answer_p99: float = float("nan")
    answer_max: float = float("nan")
    all_fired_after: float = float("nan")
    healthz_p50: float = float("nan")
    healthz_p99: float = float("nan")
    healthz_max: float = float("nan")
    stalls: list[tuple[float, float]] = field(default_factory=list)
    """(seconds after serving, healthz ms) of every probe slower than 100 ms."""
    t_due_after_serving: float = 0.0
    load_average: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------- the insert helper


async def _insert(url: str, client_id: str, sessions: list[dict[str, str]], total: int, lead: float,
                  seed: int) -> float:
    """Writes `total - len(sessions)` far-future items, then one due item per session at now + `lead`
    (computed once the rest is written, so the restart right after finds them `lead` s ahead).
    Returns that due time (epoch seconds)."""
    from botline.domain.schedules import ScheduledItem, ScheduleKind, ScheduleTarget
    from botline.store import open_store

    rng = random.Random(seed)
    store = await open_store(url)
    try:
        client = await store.chat_clients.find(client_id)
        assert client is not None, client_id
        repo: Any = store.schedules
        real_db = repo._db

        class _Batched:
            """The repository's connection with commit() deferred: one transaction per INSERT_BATCH rows."""

            def __getattr__(self, name: str) -> Any:
                return getattr(real_db, name)

            async def commit(self) -> None:
                return None

        def item(i: int, when: datetime, target: str, user: str) -> ScheduledItem:
            return ScheduledItem(
                kind=ScheduleKind.ONE_SHOT, account_id=client.account_id, chat_client_id=client.id,
                external_user_id=user, target=ScheduleTarget.WEB_CHAT, target_identifier=target,
                reason="benchmark: check in with the user", context=f"item {i}", scheduled_time=when,
                next_activation=when, created_at=now - timedelta(seconds=rng.uniform(0, 30 * 86_400)),
            )

        repo._db = _Batched()
        now = datetime.now(UTC)
        future = total - len(sessions)
        for start in range(0, future, INSERT_BATCH):
            batch = [item(i, now + timedelta(seconds=rng.uniform(86_400, 30 * 86_400)), f"session-{i}", f"user-{i}")
                     for i in range(start, min(start + INSERT_BATCH, future))]
            await asyncio.gather(*(repo.create(x) for x in batch))  # queued on aiosqlite's thread together
            await real_db.commit()
        due_at = time.time() + lead
        due_time = datetime.fromtimestamp(due_at, UTC)
        for j, session in enumerate(sessions):
            await repo.create(item(future + j, due_time, session["sessionId"], session["tag"]))
        await real_db.commit()
        return due_at
    finally:
        repo._db = real_db
        await store.close()


def _insert_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.schedules insert")
    parser.add_argument("--url", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--sessions", required=True, help="JSON file: [{sessionId, tag}, ...]")
    parser.add_argument("--total", type=int, required=True)
    parser.add_argument("--lead", type=float, required=True, help="the due items fall due this many s from the end")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    sessions = json.loads(Path(args.sessions).read_text())
    due_at = asyncio.run(_insert(args.url, args.client, sessions, args.total, args.lead, args.seed))
    print(json.dumps({"due_at": due_at}))


# --------------------------------------------------------------------------- the run


def _timed_start(server: servers.Server, started: float, out: Start, deadline_s: float = 120) -> None:
    """Polls the log for the serving line and /readyz until both are seen (times from `started`)."""
    url = server.base_url + "/readyz"
    end = started + deadline_s
    while time.monotonic() < end and (out.serving_s != out.serving_s or out.readyz_s != out.readyz_s):
        if server.process.poll() is not None:
            raise RuntimeError(f"botline exited with {server.process.returncode}: {servers.log_lines(server)}")
        if out.serving_s != out.serving_s and SERVING in server.log_path.read_bytes():
            out.serving_s = round(time.monotonic() - started, 3)
        if out.readyz_s != out.readyz_s:
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError), \
                    urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    out.readyz_s = round(time.monotonic() - started, 3)
        time.sleep(0.01)
    out.rss_mb = round(servers.rss_mb(server.pid), 1)


@contextlib.contextmanager
def _botline(tmp: Path, fake: servers.Server, config_overrides: dict[str, Any], port: int,
             out: Start, profile_to: Path | None = None, profile_seconds: float = 15, levers: str | None = None) -> Any:
    """botline on the store in `tmp`; with `profile_to`, py-spy samples it from its first second."""
    config = servers.botline_config(tmp, port, fake, "botline", config_overrides)
    argv = [*servers.botline_command(levers), "serve", "--config", str(config)]
    env = {"BENCH_LEVERS": levers} if levers else None
    started = out.started_at = time.monotonic()
    with servers.spawn("botline", argv, port, tmp, env) as server:
        spy = None
        if profile_to is not None and (binary := profile.py_spy()):
            spy = subprocess.Popen(
                [binary, "record", "--pid", str(server.pid), "--duration", str(int(profile_seconds)), "--rate", "200",
                 "--format", "raw", "--full-filenames", "--threads", "--output", str(profile_to)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _timed_start(server, started, out)
        try:
            yield server
        finally:
            if spy is not None:
                try:
                    spy.wait(profile_seconds + 30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()


async def _setup(base: str, due: int) -> tuple[str, list[dict[str, str]]]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        client_id = await api.create_client(http, base, allowScheduledContinuations=True)
        sessions = await api.create_sessions(http, base, client_id, due, tag_prefix="user-", expires=7 * 86_400)
    return client_id, [{"sessionId": s["sessionId"], "tag": f"user-{i}"} for i, s in enumerate(sessions)]


async def _observe(server: servers.Server, until: float, result: Result, serving_at: float, db: Path,
                   due: int, cap: float) -> None:
    """Probes /healthz every PROBE s until `until` (monotonic) and until every due item has fired (at most
    until `cap`); notes when they all had."""
    latencies: list[float] = []
    ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        async with aiohttp.ClientSession() as http:
            next_check = 0.0
            while time.monotonic() < cap and (time.monotonic() < until
                                               or result.all_fired_after != result.all_fired_after):
                started = time.monotonic()
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(server.base_url + "/healthz") as response:
                        await response.read()
                took = time.monotonic() - started
                latencies.append(took)
                if took > 0.1:
                    result.stalls.append((round(started - serving_at, 1), _ms(took)))
                if result.all_fired_after != result.all_fired_after and time.monotonic() > next_check:
                    next_check = time.monotonic() + 0.25
                    with contextlib.suppress(sqlite3.Error):
                        done = ro.execute("SELECT count(*) FROM schedules WHERE active = 0").fetchone()[0]
                        if done >= due:
                            since_due = time.monotonic() - serving_at - result.t_due_after_serving
                            result.all_fired_after = round(since_due, 2)
                await asyncio.sleep(max(PROBE - took, 0))
    finally:
        ro.close()
    if latencies:
        ordered = sorted(latencies)
        result.healthz_p50 = _ms(statistics.median(ordered))
        result.healthz_p99 = _ms(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))])
        result.healthz_max = _ms(ordered[-1])


async def _read_back(url: str, client_id: str, sessions: list[dict[str, str]], due_at: datetime,
                     result: Result) -> None:
    from botline.store import open_store

    store = await open_store(url)
    try:
        client = await store.chat_clients.find(client_id)
        assert client is not None
        items = [i for i in await store.schedules.list_for_client(client.account_id, client_id)
                 if i.scheduled_time == due_at]
        claims, answers = [], []
        for item in items:
            if item.activated_at is None:
                continue
            result.fired += 1
            outcome = item.history[-1].outcome.value if item.history else "?"
            result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
            claims.append((item.activated_at - due_at).total_seconds())
        for session in sessions:
            messages = await store.messages.list(session["sessionId"])
            assistant = [m for m in messages if m.role.value == "assistant"]
            if assistant:
                answers.append((assistant[-1].created_at - due_at).total_seconds())
    finally:
        await store.close()
    for prefix, values in (("claim", claims), ("answer", answers)):
        if values:
            ordered = sorted(values)
            setattr(result, f"{prefix}_p50", _ms(statistics.median(ordered)))
            setattr(result, f"{prefix}_p99", _ms(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]))
            setattr(result, f"{prefix}_max", _ms(ordered[-1]))


def run(*, quick: bool = False, log: Any = print, total: int | None = None, due: int | None = None,
        profile_to: Path | None = None, levers: str | None = None) -> Result:
    plan = QUICK if quick else FULL
    if total or due:
        plan = Plan(**{**asdict(plan), **({"total": total} if total else {}), **({"due": due} if due else {})})
    result = Result(plan=asdict(plan), levers=levers)
    result.load_average["start"] = load_average()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(servers.workdir("botline-bench-schedules-"))
        fake = stack.enter_context(servers.fake_llm(tmp))
        port = servers.free_port()
        overrides = {"server": {"shutdown_grace_seconds": 5}, "scheduler": {"sync_interval_seconds": SYNC_SECONDS}}
        with _botline(tmp, fake, overrides, port, result.baseline) as server:
            client_id, sessions = uvloop_run(_setup(server.base_url, plan.due))
        log(f"schedules: baseline start {result.baseline.serving_s} s to serving, RSS {result.baseline.rss_mb} MiB; "
            f"client {client_id}, {len(sessions)} sessions")
        db = tmp / "botline.db"
        url = f"sqlite:///{db}"
        sessions_file = tmp / "sessions.json"
        sessions_file.write_text(json.dumps(sessions))
        insert_started = time.monotonic()
        helper = subprocess.run(
            [sys.executable, "-m", "bench.schedules", "insert", "--url", url, "--client", client_id,
             "--sessions", str(sessions_file), "--total", str(plan.total), "--lead", str(plan.lead_seconds)],
            cwd=servers.ROOT, check=True, timeout=300, capture_output=True, text=True)
        due_at_epoch = float(json.loads(helper.stdout.strip().splitlines()[-1])["due_at"])
        result.insert_seconds = round(time.monotonic() - insert_started, 1)
        result.db_mb = round(db.stat().st_size / 2**20, 1)
        log(f"  {plan.total:,} schedules inserted in {result.insert_seconds} s ({result.db_mb} MiB); "
            f"{plan.due} due in {due_at_epoch - time.time():.1f} s")
        with _botline(tmp, fake, overrides, port, result.loaded, profile_to,
                      profile_seconds=plan.observe_seconds + 10, levers=levers) as server:
            serving_at = result.loaded.started_at + result.loaded.serving_s
            result.t_due_after_serving = round(due_at_epoch - time.time(), 2)
            log(f"  restart: {result.loaded.serving_s} s to serving, {result.loaded.readyz_s} s to /readyz 200, "
                f"RSS {result.loaded.rss_mb} MiB; the {plan.due} fall due {result.t_due_after_serving} s later")
            if result.t_due_after_serving < 1:
                log("  WARNING: the due items were already due when botline was serving (load slower than planned)")
            due_monotonic = serving_at + result.t_due_after_serving
            until = max(serving_at + plan.observe_seconds, due_monotonic + 1)
            uvloop_run(_observe(server, until, result, serving_at, db, plan.due, cap=due_monotonic + 30))
            result.rss_after_fire_mb = round(servers.rss_mb(server.pid), 1)
        due_time = datetime.fromtimestamp(due_at_epoch, UTC)
        uvloop_run(_read_back(url, client_id, sessions, due_time, result))
        log(f"  fired {result.fired}/{plan.due} {result.outcomes}; claim lateness p50 {result.claim_p50} ms p99 "
            f"{result.claim_p99} ms; answer lateness p50 {result.answer_p50} ms p99 {result.answer_p99} ms; "
            f"healthz p99 {result.healthz_p99} ms max {result.healthz_max} ms; stalls {result.stalls[:6]}")
    result.seconds = round(time.perf_counter() - started, 1)
    result.load_average["end"] = load_average()
    return result


def _f(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


def table(result: Result) -> str:
    p = result.plan
    lines = [
        "| pending schedules | start to serving: empty store → loaded | **load time** | /readyz 200 | RSS: empty → "
        "loaded → after firing | due at once | fired | **claim lateness p50 / p99 / max** | "
        "answer lateness p50 / p99 / max | all fired after | /healthz p50 / p99 / max while running |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {p['total']:,} | {result.baseline.serving_s:.2f} s → {result.loaded.serving_s:.2f} s | "
        f"**{result.loaded.serving_s - result.baseline.serving_s:.2f} s** | {result.loaded.readyz_s:.2f} s | "
        f"{result.baseline.rss_mb:.0f} → {result.loaded.rss_mb:.0f} → {result.rss_after_fire_mb:.0f} MiB | "
        f"{p['due']:,} | {result.fired:,} {result.outcomes} | **{_f(result.claim_p50)} / {_f(result.claim_p99)} / "
        f"{_f(result.claim_max)} ms** | {_f(result.answer_p50)} / {_f(result.answer_p99)} / "
        f"{_f(result.answer_max)} ms | "
        f"{_f(result.all_fired_after, 2)} s | {_f(result.healthz_p50, 1)} / {_f(result.healthz_p99, 1)} / "
        f"{_f(result.healthz_max)} ms |",
        "",
        f"Insert through the Store API: {result.insert_seconds} s (SQLite file {result.db_mb} MiB). The due items "
        f"fell due {result.t_due_after_serving} s after botline was serving. Load time = start to serving with "
        "the schedules minus the same on the empty store.",
    ]
    if result.levers:
        lines.append(f"Restarted botline with bench.levers {result.levers}.")
    if result.stalls:
        lines.append("/healthz slower than 100 ms (s after serving, ms): "
                     + ", ".join(f"{t:.1f} s: {ms:.0f}" for t, ms in result.stalls[:12]))
    lines.append(_load_line(result.load_average))
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "insert":
        _insert_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench.schedules", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--total", type=int)
    parser.add_argument("--due", type=int)
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the restarted botline from its first second (load, firing, resync)")
    parser.add_argument("--levers", help="restart botline with these bench.levers (what-if)")
    args = parser.parse_args()
    out_dir = servers.ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / f"profile-{time.strftime('%Y%m%d-%H%M%S')}-schedules.txt" if args.profile else None
    result = run(quick=args.quick, total=args.total, due=args.due, profile_to=raw, levers=args.levers)
    print(table(result))
    if raw is not None and raw.exists():
        summary = profile.summarize(raw.read_text())
        summary.update(mode="schedules start-up + firing + resync", concurrency="-", raw=str(raw),
                       requests_per_second_while_sampled="-")
        print(profile.report(summary))
    servers.save_result("schedules", asdict(result))


if __name__ == "__main__":
    main()
