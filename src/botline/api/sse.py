"""Server-sent events over an aiohttp StreamResponse, with keep-alive pings for proxies."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterable

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


def event_frame(name: str, payload: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


class Pinger:
    """Sends a ping comment to every open stream each `interval`, from one task for all of them.

    A task per stream cost one task creation and cancellation per request and memory at 10,000
    open streams. A stream with bytes still waiting in its socket buffer is skipped: it is not idle,
    and a ping must never wait on a reader that does not read.
    """

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._streams: set[SseStream] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, stream: SseStream) -> None:
        self._streams.add(stream)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sse-pinger")

    def discard(self, stream: SseStream) -> None:
        self._streams.discard(stream)
        if not self._streams and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            for stream in list(self._streams):
                await stream.ping()


_pingers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pinger] = weakref.WeakKeyDictionary()


def loop_pinger() -> Pinger:
    """The running event loop's pinger (every 15 s)."""
    loop = asyncio.get_running_loop()
    pinger = _pingers.get(loop)
    if pinger is None:
        pinger = _pingers[loop] = Pinger(PING_INTERVAL_SECONDS)
    return pinger


class SseStream:
    """Opens lazily, so an error before the first event can still be a plain JSON error answer.

    Writes raise ConnectionResetError once the client has gone; callers let it propagate to stop
    the work that feeds the stream.
    """

    def __init__(self, request: web.Request, *, open_streams: Gauge, pinger: Pinger | None) -> None:
        """`open_streams` counts this stream from its first event until it is closed; `pinger`:
        usually `loop_pinger()`; None sends no pings."""
        self._request = request
        self._open_streams = open_streams
        self._counted = False
        self._pinger = pinger
        self._closed = False
        self.response = web.StreamResponse(headers=SSE_HEADERS)

    @property
    def opened(self) -> bool:
        return self.response.prepared

    async def open(self) -> None:
        if self.response.prepared:
            return
        await self.response.prepare(self._request)
        self._open_streams.inc()
        self._counted = True
        if self._pinger is not None:
            self._pinger.add(self)

    async def data(self, payload: bytes) -> None:
        await self.open()
        await self.response.write(b"data: " + payload + b"\n\n")

    async def frames(self, frames: Iterable[bytes]) -> None:
        """Several frames in one write (one chunk, one send) rather than one write each."""
        await self.open()
        await self.response.write(b"".join(frames))

    async def ping(self) -> None:
        transport = self._request.transport
        if self._closed or transport is None or transport.is_closing() or transport.get_write_buffer_size():
            return
        with contextlib.suppress(ConnectionResetError):
            await self.response.write(PING_FRAME)

    async def close(self) -> None:
        self._closed = True
        if self._counted:
            self._counted = False
            self._open_streams.dec()
        if self._pinger is not None:
            self._pinger.discard(self)
        if self.response.prepared:
            with contextlib.suppress(ConnectionResetError):
                await self.response.write_eof()
