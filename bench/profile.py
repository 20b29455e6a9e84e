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
THREAD = re.compile(r"^thread \((?P<id>(0x)?[0-9a-fA-F]+)\)$")
TOP = 15


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
            thread = match["id"]
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


def summarize(raw: str) -> dict[str, Any]:
    total = 0
    threads: Counter[str] = Counter()
    self_components: Counter[str] = Counter()
    inclusive_components: Counter[str] = Counter()
    inclusive_botline: Counter[str] = Counter()
    innermost: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in raw.splitlines():
        parsed = _parse(line.strip())
        if parsed is None:
            continue
        thread, frames, count = parsed
        if not frames:
            continue
        total += count
        threads[thread or "?"] += count
        leaf_function, leaf_file = frames[-1]
        leaf_component = component(leaf_file)
        self_components[leaf_component] += count
        leaves[_short(leaf_function, leaf_file)] += count
        for name in {component(f) for _, f in frames}:
            inclusive_components[name] += count
        ours = [(fn, f) for fn, f in frames if "/src/botline/" in f]
        for name in {_short(fn, f) for fn, f in ours}:
            inclusive_botline[name] += count
        if ours:
            function, path = ours[-1]
            innermost[f"{_short(function, path)} -> {leaf_component}"] += count
        else:
            innermost[f"(no botline frame) -> {leaf_component}"] += count

    def share(counter: Counter[str], limit: int | None = None) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(limit)] if total else []

    return {
        "samples": total,
        "rate": RATE,
        "threads": share(threads),
        "self_by_component": share(self_components),
        "inclusive_by_component": share(inclusive_components),
        "inclusive_by_botline_function": share(inclusive_botline, TOP + 10),
        "innermost_botline_frame": share(innermost, TOP + 5),
        "leaf_functions": share(leaves, TOP + 5),
    }


def report(summary: dict[str, Any]) -> str:
    def block(title: str, rows: list[tuple[str, float]], limit: int = TOP) -> list[str]:
        return [f"\n{title}", *(f"  {pct:5.1f}%  {name}" for name, pct in rows[:limit])]

    lines = [f"\n## py-spy profile of botline: {summary['mode']}, {summary['concurrency']} clients, "
             f"{summary['samples']} busy samples at {summary['rate']} Hz "
             f"({summary['requests_per_second_while_sampled']} req/s while sampled; raw: {summary['raw']})"]
    lines += block("threads (share of busy samples)", summary["threads"], 5)
    lines += block("self time by component (leaf frame)", summary["self_by_component"])
    lines += block("inclusive time by component", summary["inclusive_by_component"])
    lines += block("inclusive time by botline function", summary["inclusive_by_botline_function"], 20)
    lines += block("innermost botline frame -> component of the leaf", summary["innermost_botline_frame"], 20)
    lines += block("hottest leaf functions", summary["leaf_functions"], 20)
    return "\n".join(lines)
