"""A closed-loop HTTP load generator on aiohttp: `concurrency` clients share one keep-alive session.

Each client sends its next request as soon as the previous answer is fully read. Per request it
records the time to the complete answer and the time to the first body byte (for SSE streams, the
first chunk), in seconds, from `time.perf_counter()`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

READ_CHUNK = 1 << 16


@dataclass
class Target:
    """One endpoint and the exact request to send to it."""

    name: str
    url: str
    body: bytes
    headers: dict[str, str]
    stream: bool = False


@dataclass
class Batch:
    """The outcome of `n` requests at a given concurrency."""

    target: str
    concurrency: int
    total: list[float] = field(default_factory=list)
    first_byte: list[float] = field(default_factory=list)
    wall: float = 0.0
    errors: int = 0
    first_error: str | None = None

    @property
    def requests_per_second(self) -> float:
        return len(self.total) / self.wall if self.wall else 0.0


class CountsErrors(Protocol):
    errors: int
    first_error: str | None


def note_error(result: CountsErrors, what: str) -> None:
    """Counts a failed request; the first failure's text is kept for the report."""
    result.errors += 1
    result.first_error = result.first_error or what


def failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def post(http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> str | None:
    """POSTs and reads the whole answer: None for a 200, else what went wrong."""
    try:
        async with http.post(url, data=body, headers=headers) as response:
            await response.read()
            status = response.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        return failure(exc)
    return None if status == 200 else f"HTTP {status}"


def session(concurrency: int) -> aiohttp.ClientSession:
    """One pooled keep-alive session sized for `concurrency` clients per host."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=concurrency, force_close=False, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def _one(http: aiohttp.ClientSession, target: Target, batch: Batch) -> None:
    started = time.perf_counter()
    first: float | None = None
    try:
        async with http.post(target.url, data=target.body, headers=target.headers) as response:
            if target.stream:
                while await response.content.read(READ_CHUNK):
                    if first is None:
                        first = time.perf_counter()
            else:
                await response.read()
                first = time.perf_counter()
            status = response.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        note_error(batch, failure(exc))
        return
    ended = time.perf_counter()
    if status != 200:
        note_error(batch, f"HTTP {status}")
        return
    batch.total.append(ended - started)
    batch.first_byte.append((first or ended) - started)


async def run_batch(http: aiohttp.ClientSession, target: Target, *, n: int, concurrency: int) -> Batch:
    """`n` requests to `target` from `concurrency` closed-loop clients."""
    batch = Batch(target=target.name, concurrency=concurrency)
    remaining = n

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await _one(http, target, batch)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(concurrency, n))))
    batch.wall = time.perf_counter() - started
    return batch


async def run_for(http: aiohttp.ClientSession, target: Target, *, seconds: float, concurrency: int) -> Batch:
    """Closed-loop load on `target` for about `seconds` (used while a profiler samples the server)."""
    batch = Batch(target=target.name, concurrency=concurrency)
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            await _one(http, target, batch)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    batch.wall = time.perf_counter() - started
    return batch


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) with linear interpolation between closest ranks."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
