"""Stopping a web-chat turn from any replica.

The turn runs as a task in the replica that took its prompt; the stop may reach another one. A stop
is a signal to every replica (through the Store: Redis pub/sub, or in-process for SQLite); each one
cancels the session's turns it runs, waits until their partial answers are stored, and confirms. The
replica that was asked answers once every replica has confirmed, so a transcript read right after
the stop shows the stopped answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from botline.store.signals import SignalBus

CANCEL_TOPIC = "chat.cancel"
STOPPED_TOPIC = "chat.stopped"
CONFIRM_SECONDS = 3.0
"""How long a stop waits for confirmations; a replica that is not listening never sends one."""

StopHere = Callable[[str, float], Awaitable[int]]
"""Cancels this process's turns of a session, waits up to the given seconds for them to be stored,
and returns how many there were."""


class CancelSignal(BaseModel):
    request: str
    session_id: str


class StoppedSignal(BaseModel):
    request: str
    stopped: int


class TurnStopper:
    def __init__(self, signals: SignalBus, stop_here: StopHere) -> None:
        self._signals = signals
        self._stop_here = stop_here
        self._confirmations: dict[str, asyncio.Queue[int]] = {}

    async def start(self) -> None:
        await self._signals.subscribe(CANCEL_TOPIC, self._on_cancel)
        await self._signals.subscribe(STOPPED_TOPIC, self._on_stopped)

    async def stop(self, session_id: str) -> int:
        """Stops the session's running and queued turns wherever they run; returns how many were stopped.

        Returns when every replica has confirmed, or after CONFIRM_SECONDS if one stays silent.
        """
        request = uuid.uuid4().hex
        confirmations = self._confirmations[request] = asyncio.Queue()
        try:
            signal = CancelSignal(request=request, session_id=session_id)
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
        stopped = await self._stop_here(signal.session_id, CONFIRM_SECONDS)
        answer = StoppedSignal(request=signal.request, stopped=stopped)
        await self._signals.publish(STOPPED_TOPIC, answer.model_dump_json())

    async def _on_stopped(self, payload: str) -> None:
        signal = StoppedSignal.model_validate_json(payload)
        if (confirmations := self._confirmations.get(signal.request)) is not None:
            confirmations.put_nowait(signal.stopped)
