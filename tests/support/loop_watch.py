"""Is the server still responsive while it handles a hostile request? /healthz polled back to back."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
import pytest

from botline.cli import GC_FIRST_THRESHOLD
from tests.support.server import RunningServer

T = TypeVar("T")
HEALTHZ_BUDGET_SECONDS = 0.1
"""The one wall-clock assertion the test suite allows: /healthz answers within this while work runs."""


async def slowest_healthz_during(server: RunningServer, work: Awaitable[T]) -> tuple[T, float]:
    """Runs `work` while polling /healthz one request after another (at least once, the first poll sent
    alongside it); returns the work's result and the slowest poll, in seconds."""
    task = asyncio.ensure_future(work)
    slowest = 0.0
    while True:
        started = time.perf_counter()
        async with server.http.get(server.url + "/healthz") as response:
            assert response.status == 200
            await response.read()
        slowest = max(slowest, time.perf_counter() - started)
        if task.done():
            return await task, slowest


@pytest.fixture(autouse=True)
def collector_as_botline_serve_sets_it() -> Iterator[None]:
    """The server runs in this process: collect garbage as `botline serve` does (docs/decisions.md), or a
    full collection over pytest's own heap, started by a million-value body, is what /healthz waits on."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_FIRST_THRESHOLD, 10, 10)
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


@dataclass
class HealthProbe:
    seconds: list[float] = field(default_factory=list)

    @property
    def slowest(self) -> float:
        return max(self.seconds)


@asynccontextmanager
async def probing_health(server: RunningServer) -> AsyncIterator[HealthProbe]:
    """Requests /healthz back to back (its own connection) until the block ends; records each wait."""
    probe = HealthProbe()
    done = asyncio.Event()

    async def poll() -> None:
        async with aiohttp.ClientSession() as http:
            while not done.is_set():
                started = time.perf_counter()
                async with http.get(server.url + "/healthz") as response:
                    assert response.status == 200
                    await response.read()
                probe.seconds.append(time.perf_counter() - started)

    polling = asyncio.create_task(poll())
    try:
        yield probe
    finally:
        done.set()
        await polling
