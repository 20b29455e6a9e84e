"""Server-sent events over an aiohttp StreamResponse, with keep-alive pings for proxies."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from prometheus_client import Gauge

PING_INTERVAL_SECONDS = 15.0
PING_FRAME = b": ping\n\n"
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


class SseStream:
    """Opens lazily, so an error before the first event can still be a plain JSON error answer.

    Writes raise ConnectionResetError once the client has gone; callers let it propagate to stop
    the work that feeds the stream.
    """

    def __init__(
        self, request: web.Request, *, open_streams: Gauge, ping_interval: float | None = PING_INTERVAL_SECONDS
    ) -> None:
        """`open_streams` counts this stream from its first event until it is closed."""
        self._request = request
        self._open_streams = open_streams
        self._counted = False
        self._ping_interval = ping_interval
        self.response = web.StreamResponse(headers=SSE_HEADERS)
        self._pinger: asyncio.Task[None] | None = None

    @property
    def opened(self) -> bool:
        return self.response.prepared

    async def open(self) -> None:
        if self.response.prepared:
            return
        await self.response.prepare(self._request)
        self._open_streams.inc()
        self._counted = True
        if self._ping_interval:
            self._pinger = asyncio.create_task(self._ping(self._ping_interval))

    async def data(self, payload: bytes) -> None:
        await self.open()
        await self.response.write(b"data: " + payload + b"\n\n")

    async def event(self, name: str, payload: bytes) -> None:
        await self.open()
        await self.response.write(b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n")

    async def close(self) -> None:
        if self._counted:
            self._counted = False
            self._open_streams.dec()
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
            self._pinger = None
        if self.response.prepared:
            with contextlib.suppress(ConnectionResetError):
                await self.response.write_eof()

    async def _ping(self, interval: float) -> None:
        with contextlib.suppress(ConnectionResetError):
            while True:
                await asyncio.sleep(interval)
                await self.response.write(PING_FRAME)
