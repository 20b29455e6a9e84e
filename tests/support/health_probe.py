"""Polls /healthz while something hostile runs, to show the event loop kept answering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp

from tests.support.server import RunningServer

MAX_HEALTHZ_SECONDS = 0.1


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
