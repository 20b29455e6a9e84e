"""Requests being handled, counted so that a shutdown can wait for them within its one deadline.

aiohttp's own shutdown wait starts only after the app's on_shutdown hooks; waiting for open requests
here, alongside the turns, keeps SIGTERM-to-exit within one `server.shutdown_grace_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from aiohttp.typedefs import Handler


class InFlightRequests:
    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self._count += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self._count -= 1
            if self._count == 0:
                self._idle.set()

    async def wait_idle(self, timeout: float) -> None:
        """Returns when no request is being handled, or after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
