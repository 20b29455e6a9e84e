"""Tells the open chat pages of a session, on every replica, that it has messages no turn of theirs
produced (an agent answered through the API, a scheduled continuation was written).

A signal carries only the session id; a page that hears it fetches the new messages the way its poll
does (`GET` of the session). Signals are at most once: a page that misses one still gets the message
at its next poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from botline.store.base import StoreError
from botline.store.signals import SignalBus

log = logging.getLogger(__name__)

NEW_MESSAGES_TOPIC = "chat.new-messages"


class LiveMessages:
    def __init__(self, signals: SignalBus) -> None:
        self._signals = signals
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self.closing = False
        """Set at shutdown: the open streams end (their pages reconnect to another replica or later)."""

    async def start(self) -> None:
        await self._signals.subscribe(NEW_MESSAGES_TOPIC, self._on_signal)

    async def announce(self, session_id: str) -> None:
        """Wakes the session's open pages here and on the other replicas; a failure is only logged (the
        pages' poll still brings the message)."""
        try:
            await self._signals.publish(NEW_MESSAGES_TOPIC, session_id)
        except StoreError as exc:
            log.warning("open pages of session %s not told of a new message (%s); they see it at their poll",
                        session_id, exc)

    @contextmanager
    def watch(self, session_id: str) -> Iterator[asyncio.Event]:
        """An event set at each announcement for the session while the `with` block runs (the watcher
        clears it once it has looked)."""
        event = asyncio.Event()
        watchers = self._watchers.setdefault(session_id, set())
        watchers.add(event)
        try:
            yield event
        finally:
            watchers.discard(event)
            if not watchers:
                self._watchers.pop(session_id, None)

    def close(self) -> None:
        """Wakes every watcher so that the streams end before the shutdown waits for open requests."""
        self.closing = True
        for watchers in self._watchers.values():
            for event in watchers:
                event.set()

    async def _on_signal(self, payload: str) -> None:
        for event in self._watchers.get(payload, ()):
            event.set()
