"""The Redis connection pool: redis-py's plain pool, waiting for a free connection when all are busy.

redis-py's plain pool fails at once when `max_connections` are in use (under load that was 503s on
webhooks); its BlockingConnectionPool waits, but takes an asyncio.Condition on every get and release
and arms a timeout on every get, even when a connection is free: ~20-40 µs of CPU per command on
the web chat's hot path (docs/decisions.md "One deadline per Store call"). Here the wait is a
semaphore, taken without suspending while a connection is free. How long a caller may wait is its
Store call's deadline (redis_base._reachable), not the pool's.

Its connections pack commands straight with hiredis when every argument is a plain str, bytes, int or
float (`DirectPacker`): redis-py encodes each argument in Python first, which was ~6 % of a Redis web
chat prompt's CPU for what hiredis does in C with the same bytes out.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import hiredis
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.typing import EncodableT

from botline.store.redis_base import WALK

PLAIN = frozenset({str, bytes, int, float})
"""Argument types hiredis packs exactly as redis-py's encoder does (UTF-8, strict; numbers by repr).
`bool`, which redis-py refuses, is not among them: type() is compared, not isinstance."""


class _Packer(Protocol):
    def pack(self, *args: EncodableT) -> list[bytes]: ...


class DirectPacker:
    """A connection's packer (redis-py's hiredis one) with the plain case done in one C call."""

    def __init__(self, packer: _Packer) -> None:
        self._packer = packer

    def pack(self, *args: EncodableT) -> list[bytes]:
        name = args[0]
        if type(name) is str and " " not in name and PLAIN.issuperset(map(type, args)):
            return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # its stub types a 1-tuple
        return self._packer.pack(*args)  # "CLIENT SETNAME"-style names, memoryviews, refused types


class WaitingConnectionPool(ConnectionPool):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._free = asyncio.Semaphore(self.max_connections)
        self._handed_out: set[AbstractConnection] = set()
        """Connections given out and not yet given back: each holds one of the semaphore's slots.
        redis-py may release a connection twice (a release cancelled while waiting for its lock is
        finished in the background), so a slot is returned only by the first."""

    def make_connection(self) -> AbstractConnection:
        connection: AbstractConnection = super().make_connection()  # type: ignore[no-untyped-call]
        encoder = connection.encoder
        packer = getattr(connection, "_command_packer", None)
        if packer is not None and (encoder.encoding, encoder.encoding_errors) == ("utf-8", "strict"):
            connection._command_packer = DirectPacker(packer)  # type: ignore[assignment]
        return connection

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        """A connected connection; waits while `max_connections` are in use. The arguments (all
        deprecated by redis-py) are ignored, as its own pools ignore them. Within a walk
        (redis_base.Walk) the command's deadline starts here, the wait for a connection included."""
        walk = WALK.get()
        if walk is not None:
            walk.command_started()
        try:
            await self._free.acquire()
        except BaseException:
            if walk is not None:
                walk.command_ended()
            raise
        try:
            connection: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            self._free.release()
            if walk is not None:
                walk.command_ended()
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
            if connection in self._handed_out:  # the first release only (see _handed_out)
                self._handed_out.discard(connection)
                self._free.release()
                walk = WALK.get()
                if walk is not None:
                    walk.command_ended()
