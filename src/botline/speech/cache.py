"""Synthesised audio shared by every replica through the Store, and readable while it is being made.

A synthesis running on this replica is an `AudioFlight`: the bytes received so far, which any number
of listeners read from the start while more arrive (the page's player, a second tab, a channel send).
Once whole it is put in the Store's shared blobs under its key for `speech.cache_seconds`, so a retry,
a reload or another replica does not pay for it again. A failure is not kept: the next ask tries again.
Two replicas asked for the same new audio at the same moment may both synthesise it (no cross-replica
lock: docs/decisions.md, "Audio cache in the Store").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from botline.domain.clock import Clock
from botline.store.base import StoreError
from botline.store.media import Blob, BlobRepository

log = logging.getLogger(__name__)


class AudioFlight:
    """Audio arriving in chunks. `content_type` is set before the first chunk is fed."""

    def __init__(self, content_type: str = "") -> None:
        self.content_type = content_type
        self._chunks: list[bytes] = []
        self._size = 0
        self._more = asyncio.Event()
        self._finished = False
        self._error: Exception | None = None

    @classmethod
    def whole(cls, blob: Blob) -> AudioFlight:
        flight = cls(blob.content_type)
        flight.feed(blob.data)
        flight.finish()
        return flight

    @property
    def size(self) -> int:
        return self._size

    @property
    def finished(self) -> bool:
        return self._finished

    def feed(self, chunk: bytes) -> None:
        if chunk:
            self._chunks.append(chunk)
            self._size += len(chunk)
            self._wake()

    def finish(self, error: Exception | None = None) -> None:
        """No more chunks; with `error`, listeners raise it once they have read what came before."""
        if not self._finished:
            self._finished, self._error = True, error
            self._wake()

    def _wake(self) -> None:
        self._more.set()
        self._more = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        """Every chunk from the first, as they arrive; raises the flight's error at its end."""
        index = 0
        while True:
            waiter = self._more
            if index < len(self._chunks):
                index += 1
                yield self._chunks[index - 1]
            elif self._finished:
                if self._error is not None:
                    raise self._error
                return
            else:
                await waiter.wait()

    def received(self) -> bytes:
        """The bytes fed so far."""
        return b"".join(self._chunks)

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])


Make = Callable[[AudioFlight], Awaitable[None]]
"""Feeds a flight with the audio it synthesises; raises (a SpeechError) when it cannot."""


class AudioCache:
    def __init__(self, blobs: BlobRepository, clock: Clock, *, ttl_seconds: float) -> None:
        self._blobs = blobs
        self._clock = clock
        self._ttl = ttl_seconds
        self._flights: dict[str, AudioFlight] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self, key: str, make: Make) -> tuple[AudioFlight, bool]:
        """The audio for `key`, and whether it is being made for this ask: the flight already running here,
        the Store's copy, or a new flight that `make` feeds in a task of its own (it goes on, and fills the
        cache, when the asker goes away)."""
        if (flight := self._flights.get(key)) is not None:
            return flight, False
        if self._ttl > 0 and (blob := await self._stored(key)) is not None:
            return AudioFlight.whole(blob), False
        if (flight := self._flights.get(key)) is not None:  # started while the Store was asked
            return flight, False
        flight = self._flights[key] = AudioFlight()
        task = asyncio.create_task(self._fly(key, flight, make), name="speech-synthesis")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return flight, True

    async def _stored(self, key: str) -> Blob | None:
        try:
            return await self._blobs.get(key, now=self._clock.now())
        except StoreError as exc:  # no cache: the audio is made again, the answer still speaks
            log.warning("audio cache not read: %s", exc)
            return None

    async def _fly(self, key: str, flight: AudioFlight, make: Make) -> None:
        try:
            await make(flight)
        except BaseException as exc:  # a SpeechError, or the server closing: listeners hear of it
            self._flights.pop(key, None)
            flight.finish(exc if isinstance(exc, Exception) else ConnectionAbortedError("synthesis stopped"))
            if not isinstance(exc, Exception):
                raise
            return
        try:  # kept before the flight ends: whoever has read it whole may count on the Store having it
            if self._ttl > 0:
                blob = Blob(content_type=flight.content_type, data=flight.received())
                await self._blobs.put(key, blob, now=self._clock.now(), ttl_seconds=self._ttl)
        except StoreError as exc:
            log.warning("audio cache not written: %s", exc)
        finally:
            self._flights.pop(key, None)
            flight.finish()

    async def close(self) -> None:
        """Stops the syntheses still running (their listeners get an error)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
