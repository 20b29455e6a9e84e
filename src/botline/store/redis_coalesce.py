"""The web chat's hot-path Redis commands of concurrent turns, sent together.

A Redis command's CPU is mostly its round trip (a send, an event-loop wake-up, a receive:
bench/redis_roundtrip.py), so concurrent Store calls that each send one command share round trips
here: a command that finds nothing in flight goes at once, from its caller's task; commands that
arrive while one is in flight wait for it and go together as the next batch, one non-transactional
pipeline (one write, the replies read in order), sent by a task of its own. The SQLite store batches
its jobs the same way (sqlite_base._Batcher).

Each command keeps its own outcome (a script's error fails its caller only); a batch that cannot be
sent or gets no answer within the store's deadline fails every caller in it as a lost connection
would. A caller that stops waiting (its deadline, a cancel) leaves its command to run, as a cancel
landing mid-command leaves it to Redis today.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.typing import EncodableT


class Coalescer:
    def __init__(self, client: Redis, seconds: float | None) -> None:
        """`seconds`: the store's deadline, for a whole batch (None: none)."""
        self._client = client
        self._seconds = seconds
        self._queued: list[tuple[tuple[EncodableT, ...], asyncio.Future[Any]]] = []
        self._busy = False
        """A command or a batch is in flight: what arrives now waits for the next batch."""
        self._sender: asyncio.Task[None] | None = None

    async def command(self, *args: EncodableT) -> Any:
        if not self._busy:  # nothing in flight: sent at once, from the caller's task, as without batching
            self._busy = True
            try:
                return await self._client.execute_command(*args)
            finally:
                self._busy = False
                self._send_queued()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((args, future))
        return await future

    def _send_queued(self) -> None:
        if self._queued and self._sender is None:
            self._busy = True
            self._sender = asyncio.create_task(self._send())

    async def script(self, script: AsyncScript, keys: list[str], args: list[EncodableT]) -> Any:
        """EVALSHA in a batch; a Redis that lost its scripts (a restart, SCRIPT FLUSH) gets it loaded by
        redis-py's own script call."""
        try:
            return await self.command("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            return await script(keys=keys, args=args)

    async def _send(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                batch = [(args, future) for args, future in batch if not future.done()]
                if batch:
                    await self._send_batch(batch)
        finally:  # drained, or cancelled at shutdown (what is left goes with the next command's batch)
            self._sender = None
            self._busy = False

    async def _send_batch(self, batch: list[tuple[tuple[EncodableT, ...], asyncio.Future[Any]]]) -> None:
        try:
            async with asyncio.timeout(self._seconds), self._client.pipeline(transaction=False) as pipe:
                for args, _ in batch:
                    pipe.execute_command(*args)
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:  # the loop is going away: no caller waits on for a reply never read
            for _, future in batch:
                if not future.done():
                    future.set_exception(redis_errors.ConnectionError("the batch was cancelled at shutdown"))
            raise
        except TimeoutError:
            failure: BaseException = redis_errors.TimeoutError(f"no answer within {self._seconds:g} s")
        except Exception as exc:  # the connection's failure is every command's
            failure = exc
        else:
            for (_, future), reply in zip(batch, replies, strict=True):
                if not future.done():
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
            return
        for _, future in batch:
            if not future.done():
                future.set_exception(failure)
