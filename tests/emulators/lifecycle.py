"""What every emulator shares: `async with` from start()/stop(), waiting on what it recorded without
polling, and resetting a connection the way a crashed server does."""

from __future__ import annotations

import asyncio
import socket
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Self

from aiohttp import web


class Served(ABC):
    """A loopback server a test starts and stops; `async with` does both."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class Changes:
    """Lets a test wait until what an emulator recorded satisfies a condition: the emulator calls
    `notify()` after each change, waiters re-check their predicate."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    async def next(self) -> None:
        """Returns at the next `notify()`."""
        await self._event.wait()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self.next()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


def reset_connection(request: web.Request) -> None:
    """Abort the request's TCP connection with a reset (RST), not an orderly close."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
