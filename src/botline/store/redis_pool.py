"""The Redis connection pool: redis-py's plain pool, waiting for a free connection when all are busy.

redis-py's plain pool fails at once when `max_connections` are in use (under load that was 503s on
webhooks); its BlockingConnectionPool waits, but takes an asyncio.Condition on every get and release
and arms a timeout on every get, even when a connection is free: ~20-40 µs of CPU per command on
the web chat's hot path (docs/decisions.md "One deadline per Store call"). Here the wait is a
semaphore, taken without suspending while a connection is free. How long a caller may wait is its
Store call's deadline (redis_base._reachable), not the pool's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection


class WaitingConnectionPool(ConnectionPool):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._free = asyncio.Semaphore(self.max_connections)
        self._handed_out: set[AbstractConnection] = set()
        """Connections given out and not yet given back: each holds one of the semaphore's slots.
        redis-py may release a connection twice (a release cancelled while waiting for its lock is
        finished in the background), so a slot is returned only by the first."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        """A connected connection; waits while `max_connections` are in use. The arguments (all
        deprecated by redis-py) are ignored, as its own pools ignore them."""
        await self._free.acquire()
        try:
            connection: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            self._free.release()
            raise
        self._handed_out.add(connection)
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:
            if connection in self._handed_out:
                self._handed_out.discard(connection)
                self._free.release()
