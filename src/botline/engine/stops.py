"""Stopping a web-chat turn from any replica.

The turn runs as a task in the replica that took its prompt; the stop may reach another one. The
replica that was asked stops its own turns directly, and sends a signal to the others (through the
Store: Redis pub/sub, or in-process for SQLite); each one cancels the session's turns it runs, waits
until their partial answers are stored, and confirms. The replica that was asked answers once every
replica has confirmed, so a transcript read right after the stop shows the stopped answer.

Its own turns do not depend on its own subscription: while that connection is being restored, a
stop sent to this replica still stops what runs here.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import BaseModel

from botline.store.signals import SignalBus

CANCEL_TOPIC = "chat.cancel"
STOPPED_TOPIC = "chat.stopped"
CONFIRM_SECONDS = 3.0
"""How long a stop waits for confirmations; a replica that is not listening never sends one."""

StopHere = Callable[[str, float], Coroutine[Any, Any, int]]
"""Cancels this process's turns of a session, waits up to the given seconds for them to be stored,
and returns how many there were."""


class CancelSignal(BaseModel):
    request: str
    session_id: str
    origin: str
    """The replica that sent it, which has stopped its own turns already."""


class StoppedSignal(BaseModel):
    request: str
    stopped: int


class TurnStopper:
    def __init__(self, signals: SignalBus, stop_here: StopHere) -> None:
        self._signals = signals
        self._stop_here = stop_here
        self._confirmations: dict[str, asyncio.Queue[int]] = {}
        self._replica = uuid.uuid4().hex

    async def start(self) -> None:
        await self._signals.subscribe(CANCEL_TOPIC, self._on_cancel)
        await self._signals.subscribe(STOPPED_TOPIC, self._on_stopped)

    async def stop(self, session_id: str) -> int:
        """Stops the session's running and queued turns wherever they run; returns how many were stopped.

        Returns when every replica has confirmed, or after CONFIRM_SECONDS if one stays silent.
        """
        here = asyncio.create_task(self._stop_here(session_id, CONFIRM_SECONDS))
        try:
            elsewhere = await self._stop_elsewhere(session_id)
        finally:
            stopped_here = await here
        return stopped_here + elsewhere

    async def _stop_elsewhere(self, session_id: str) -> int:
        request = uuid.uuid4().hex
        confirmations = self._confirmations[request] = asyncio.Queue()
        try:
            signal = CancelSignal(request=request, session_id=session_id, origin=self._replica)
            # Counts this replica too when its subscription is up: its own signal confirms 0 (see _on_cancel).
            replicas = await self._signals.publish(CANCEL_TOPIC, signal.model_dump_json())
            stopped = 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CONFIRM_SECONDS):
                    for _ in range(replicas):
                        stopped += await confirmations.get()
            return stopped
        finally:
            del self._confirmations[request]

    async def _on_cancel(self, payload: str) -> None:
        signal = CancelSignal.model_validate_json(payload)
        if signal.origin == self._replica:
            self._confirm(signal.request, 0)  # stopped directly by stop()
            return
        stopped = await self._stop_here(signal.session_id, CONFIRM_SECONDS)
        answer = StoppedSignal(request=signal.request, stopped=stopped)
        await self._signals.publish(STOPPED_TOPIC, answer.model_dump_json())

    async def _on_stopped(self, payload: str) -> None:
        signal = StoppedSignal.model_validate_json(payload)
        self._confirm(signal.request, signal.stopped)

    def _confirm(self, request: str, stopped: int) -> None:
        if (confirmations := self._confirmations.get(request)) is not None:
            confirmations.put_nowait(stopped)
