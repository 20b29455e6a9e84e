"""Sampling a running botline with py-spy, and summarising where its CPU time goes.

`start()` launches `py-spy record --format raw` on a pid for a fixed duration; `summarize()` turns the
collapsed stacks into percentages of the busy (non-idle) samples:

- by component of the leaf frame ("self" time: who actually burns the CPU),
- by component anywhere on the stack ("inclusive": time spent in or under it),
- by botline function, inclusive, and by the innermost botline frame with the component under it
  (which line of ours is responsible for the time spent in a library),
- the hottest leaf functions.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE = 200
"""Samples per second."""
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
THREAD = re.compile(r"^thread \((?P<id>(0x)?[0-9a-fA-F]+)\)(?::\s*(?P<name>.*))?$")
MAIN_THREAD = "MainThread"
LOOP_ENTRIES = frozenset({"run_app", "run_until_complete", "run_forever", "run"})
"""A leaf in one of these is the event loop's own native code (uvloop's C loop, epoll, callbacks)."""
TOP = 15
BROKEN_DOWN = ("openai SDK", "httpx2 transport (openai SDK's HTTP layer)")
"""Libraries whose own functions are listed (inclusive), to see which of their steps cost."""


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


async def start(pid: int, out: Path, *, seconds: float) -> asyncio.subprocess.Process | None:
    binary = py_spy()
    if binary is None:
        return None
    log = open(f"{out}.log", "wb")  # noqa: SIM115 - closed with the process below
    process = await asyncio.create_subprocess_exec(
        binary, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(RATE),
        "--format", "raw", "--full-filenames", "--threads", "--output", str(out),
        stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
    )
    process._bench_log = log  # type: ignore[attr-defined]
    return process


async def finish(process: asyncio.subprocess.Process, timeout: float = 30) -> bool:
    try:
        code = await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        process.kill()
        code = await process.wait()
    process._bench_log.close()  # type: ignore[attr-defined]
    return code == 0


def component(path: str) -> str:
    """A frame's file -> the part of the system it belongs to."""
    if "/src/botline/" in path:
        return "botline/" + path.split("/src/botline/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "site-packages/" in path:
        package = path.split("site-packages/", 1)[1].split("/", 1)[0]
        if package == "aiohttp":
            name = path.rsplit("/", 1)[1]
            if name.startswith("web") or name in ("http_parser.py", "base_protocol.py"):
                return "aiohttp server"
            if name.startswith("client") or name in ("connector.py", "tracing.py", "cookiejar.py"):
                return "aiohttp client"
            return "aiohttp (shared: streams, writer, helpers)"
        if package in ("httpx", "httpx2", "httpx_aiohttp", "httpcore", "anyio", "sniffio", "h11"):
            return "httpx2 transport (openai SDK's HTTP layer)"
        if package == "openai":
            return "openai SDK"
        if package in ("aiosqlite",):
            return "sqlite"
        if package in ("pydantic", "pydantic_core"):
            return "pydantic"
        if package in ("uvloop",):
            return "event loop"
        return package.removesuffix(".py")
    if "/asyncio/" in path:
        return "event loop"
    if "/logging/" in path:
        return "logging"
    if "/sqlite3/" in path:
        return "sqlite"
    if path.startswith("<") or "/lib/python3" in path:
        name = path.rsplit("/", 1)[-1]
        return f"stdlib ({name})"
    return "other"


def _parse(line: str) -> tuple[str | None, list[tuple[str, str]], int] | None:
    stack, _, count = line.rpartition(" ")
    if not stack or not count.isdigit():
        return None
    thread: str | None = None
    frames: list[tuple[str, str]] = []
    for raw in stack.split(";"):
        if match := THREAD.match(raw):
            thread = match["name"] or match["id"]
            continue
        match = FRAME.match(raw)
        if match is None:
            frames.append((raw, "?"))
        else:
            frames.append((match["function"], match["file"]))
    return thread, frames, int(count)


def _short(function: str, path: str) -> str:
    if "/src/botline/" in path:
        path = "botline/" + path.split("/src/botline/", 1)[1]
    elif "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif "/lib/python3" in path:
        path = path.split("/lib/", 1)[1].split("/", 1)[1]
    return f"{function} ({path})"


def _leaf_component(frames: list[tuple[str, str]]) -> str:
    function, path = frames[-1]
    if function in LOOP_ENTRIES and ("aiohttp/web.py" in path or "/asyncio/" in path or "uvloop" in path):
        return "event loop (uvloop, native)"
    return component(path)


def _ours(path: str) -> bool:
    """A botline frame on the request path (cli.py is only the entry point under every stack)."""
    return "/src/botline/" in path and not path.endswith("/botline/cli.py")


def summarize(raw: str, *, seconds: float | None = None, requests: int | None = None,
              broken_down: tuple[str, ...] = BROKEN_DOWN) -> dict[str, Any]:
    """Percentages of the main thread's busy samples (the event loop: what limits requests/s).

    `broken_down`: components whose own functions are listed (inclusive time)."""
    main = 0
    threads: Counter[str] = Counter()
    other_threads: Counter[str] = Counter()
    self_components: Counter[str] = Counter()
    inclusive_components: Counter[str] = Counter()
    inclusive_botline: Counter[str] = Counter()
    innermost: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    libraries: dict[str, Counter[str]] = {name: Counter() for name in broken_down}
    for line in raw.splitlines():
        parsed = _parse(line.strip())
        if parsed is None:
            continue
        thread, frames, count = parsed
        if not frames:
            continue
        thread = thread or "?"
        threads[thread] += count
        leaf_component = _leaf_component(frames)
        if thread != MAIN_THREAD:
            other_threads[f"{thread}: {_short(*frames[-1])} [{leaf_component}]"] += count
            continue
        main += count
        self_components[leaf_component] += count
        leaves[_short(*frames[-1])] += count
        for name in {component(f) for _, f in frames[1:]}:  # frames[0] is the `botline` script
            inclusive_components[name] += count
        ours = [(fn, f) for fn, f in frames if _ours(f)]
        for name in {_short(fn, f) for fn, f in ours}:
            inclusive_botline[name] += count
        for name, counter in libraries.items():
            for function in {_short(fn, f) for fn, f in frames if component(f) == name}:
                counter[function] += count
        where = _short(*ours[-1]) if ours else "(no botline frame)"
        innermost[f"{where} -> {leaf_component}"] += count

    def share(counter: Counter[str], limit: int | None = None) -> list[tuple[str, float]]:
        return [(name, round(100 * n / main, 1)) for name, n in counter.most_common(limit)] if main else []

    summary: dict[str, Any] = {
        "samples": main,
        "rate": RATE,
        "threads": [(name, n) for name, n in threads.most_common()],
        "other_threads_vs_main": share(other_threads, 5),
        "self_by_component": share(self_components),
        "inclusive_by_component": share(inclusive_components),
        "inclusive_by_botline_function": share(inclusive_botline, TOP + 10),
        "innermost_botline_frame": share(innermost, TOP + 10),
        "leaf_functions": share(leaves, TOP + 10),
        "inclusive_by_library_function": {name: share(counter, TOP) for name, counter in libraries.items()},
    }
    if seconds:
        summary["main_thread_busy"] = round(main / (RATE * seconds), 2)
        if requests:
            summary["main_thread_cpu_us_per_request"] = round(1e6 * main / RATE / requests, 1)
    return summary


def report(summary: dict[str, Any]) -> str:
    def block(title: str, rows: list[tuple[str, float]], limit: int = TOP) -> list[str]:
        return [f"\n{title}", *(f"  {pct:5.1f}%  {name}" for name, pct in rows[:limit])]

    lines = [f"\n## py-spy profile of {summary.get('process', 'botline')}: {summary['mode']}, "
             f"{summary['concurrency']} clients "
             f"({summary['requests_per_second_while_sampled']} req/s while sampled; raw: {summary['raw']})",
             f"main thread: {summary['samples']} busy samples at {summary['rate']} Hz, "
             f"busy {summary.get('main_thread_busy', '?')} of the time, "
             f"{summary.get('main_thread_cpu_us_per_request', '?')} us of CPU per request; "
             "percentages below are of the main thread's busy samples",
             "threads (busy samples): " + ", ".join(f"{name} {n}" for name, n in summary["threads"])]
    lines += block("other threads, relative to the main thread", summary["other_threads_vs_main"], 5)
    lines += block("self time by component (leaf frame)", summary["self_by_component"])
    lines += block("inclusive time by component", summary["inclusive_by_component"])
    lines += block("inclusive time by botline function", summary["inclusive_by_botline_function"], 20)
    lines += block("innermost botline frame -> component of the leaf", summary["innermost_botline_frame"], 20)
    lines += block("hottest leaf functions", summary["leaf_functions"], 20)
    for name, rows in summary.get("inclusive_by_library_function", {}).items():
        lines += block(f"inclusive time by {name} function", rows, 12)
    return "\n".join(lines)


def main() -> None:
    """Re-summarise a raw py-spy file: `python -m bench.profile RAW [SECONDS REQUESTS]`."""
    args = sys.argv[1:]
    if not args:
        raise SystemExit("usage: python -m bench.profile RAW_PYSPY_FILE [SECONDS REQUESTS]")
    seconds = float(args[1]) if len(args) > 1 else None
    requests = int(args[2]) if len(args) > 2 else None
    summary = summarize(Path(args[0]).read_text(), seconds=seconds, requests=requests)
    summary.update(mode="?", concurrency="?", raw=args[0], requests_per_second_while_sampled="?")
    print(report(summary))


if __name__ == "__main__":
    main()
