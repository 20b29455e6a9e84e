"""Signals: short messages to every process sharing a Store, the sender included.

What a replica holds in memory is reached through them: a stop sent to any replica cancels the
turn on the replica running it, and an edit on one replica drops the cached copies on all of them.
Delivery is at most once and nothing is kept: a process that is not listening when a signal is
published never sees it. Every use has a bound for that case (a stop waits a few seconds at most;
caches still expire on their own).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from typing import Any

from botline.store.base import ReportsErrors, StoreError

log = logging.getLogger(__name__)

SignalHandler = Callable[[str], Coroutine[Any, Any, None]]


class SignalBus(ReportsErrors, ABC):
    """Publish/subscribe by topic. Each handler call runs in its own task, so a slow one holds nothing up."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[SignalHandler]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def subscribe(self, topic: str, handler: SignalHandler) -> None:
        """Calls `handler(payload)` for every signal on `topic` published after this returns."""
        self._handlers.setdefault(topic, []).append(handler)
        await self._listen()

    @abstractmethod
    async def publish(self, topic: str, payload: str) -> int:
        """Sends `payload` to every listening process; returns how many processes received it."""

    @abstractmethod
    async def _listen(self) -> None:
        """Returns once signals published from now on reach this process's handlers (idempotent)."""

    def _deliver(self, topic: str, payload: str) -> None:
        for handler in self._handlers.get(topic, ()):
            task = asyncio.create_task(handler(payload), name=f"signal:{topic}")
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("a %s signal handler failed", task.get_name(), exc_info=error)

    async def close(self) -> None:
        """Stops handlers still running; idempotent."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


class LocalSignals(SignalBus):
    """One process (the SQLite backend): a signal goes to this process's own handlers."""

    async def publish(self, topic: str, payload: str) -> int:
        self._deliver(topic, payload)
        return 1

    async def _listen(self) -> None:
        return None


class Eviction:
    """Drops an entry from a per-process cache on every replica: here at once, elsewhere by signal.

    A signal that cannot be sent is logged, not raised (the change itself is stored): the other
    replicas then notice it when their copy expires.
    """

    def __init__(self, signals: SignalBus, topic: str, drop: Callable[[str], None]) -> None:
        self._signals = signals
        self._topic = topic
        self._drop = drop

    async def start(self) -> None:
        await self._signals.subscribe(self._topic, self._on_signal)

    async def evict(self, key: str) -> None:
        self._drop(key)
        try:
            await self._signals.publish(self._topic, key)
        except StoreError as exc:
            log.warning("could not tell the other replicas to drop %s (%s); their copies expire on their own",
                        self._topic, exc)

    async def _on_signal(self, payload: str) -> None:
        self._drop(payload)
