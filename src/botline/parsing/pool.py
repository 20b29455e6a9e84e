"""A fixed set of worker processes for CPU-heavy work on untrusted input, driven from asyncio.

Why processes, not threads: parsers such as pypdf are pure Python and hold the GIL, so a thread
would still stall the event loop. Why not `ProcessPoolExecutor`: it cannot kill one stuck worker,
only break the whole pool. Here every job gets a time limit; a job past it (or one whose worker
dies) has its worker killed, the caller gets a `ParsingError`, and the next job starts a new
worker. Workers start when first needed, from a forkserver (safe beside the event loop's threads,
and each new worker is a cheap fork of a process that already imported the parsers).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import pickle
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from botline.parsing.errors import (
    JobFailed,
    JobRejected,
    JobTimedOut,
    PoolBusy,
    PoolClosed,
    WorkerCrashed,
)
from botline.parsing.worker import FAILED, HEADER, REJECTED, serve

log = logging.getLogger(__name__)

R = TypeVar("R")

MAX_RESULT_BYTES = 64 * 1024 * 1024
"""A result frame larger than this is treated as a broken worker (jobs cap their own output far below)."""
JOIN_SECONDS = 5.0
READ_FAILURE = "The document could not be read."
_PRELOAD: dict[str, None] = {"botline.parsing.worker": None}
"""The modules the forkserver imports before forking workers, in the order pools named them."""


@dataclass(frozen=True)
class PoolLimits:
    workers: int
    """Worker processes; jobs beyond them wait in line."""
    timeout_seconds: float
    """Per job, counted from when a worker takes it."""
    max_queued: int
    """Jobs waiting for a worker beyond this are refused with PoolBusy."""
    memory_limit_bytes: int = 0
    """Address-space limit of each worker (0: none)."""


@dataclass
class _Worker:
    process: BaseProcess
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


class WorkerPool:
    """`await pool.run(function, *args)` runs a module-level function in a worker process.

    `close()` (also on `async with` exit) kills the workers and waits for them to exit.
    """

    def __init__(self, limits: PoolLimits, *, preload: Sequence[str] = (), name: str = "botline-parser") -> None:
        self._limits = limits
        self._name = name
        self._context = multiprocessing.get_context("forkserver")
        # Process-wide, and only effective before the forkserver starts (the first worker): the modules
        # of every pool made until then (the file parsers', the indexer's analysis).
        _PRELOAD.update(dict.fromkeys(preload))
        self._context.set_forkserver_preload(list(_PRELOAD))
        self._slots = asyncio.Semaphore(limits.workers)
        self._idle: list[_Worker] = []
        self._started: set[BaseProcess] = set()
        self._waiting = 0
        self._closed = False

    async def __aenter__(self) -> WorkerPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def run(self, function: Callable[..., R], *args: Any) -> R:
        """The function's result, or a ParsingError subclass saying why there is none."""
        if self._closed:
            raise PoolClosed(READ_FAILURE)
        if self._waiting >= self._limits.max_queued and self._slots.locked():
            raise PoolBusy("Too many documents are being read right now; try again in a minute.")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            if self._closed:
                raise PoolClosed(READ_FAILURE)
            worker = self._idle.pop() if self._idle else await self._start()
            try:
                status, value = await self._exchange(worker, function, args)
            except BaseException:  # timed out, crashed or cancelled: its state is unknown, never reuse it
                self._kill(worker)
                raise
            self._idle.append(worker)
        finally:
            self._slots.release()
        if status == REJECTED:
            raise JobRejected(str(value))
        if status == FAILED:
            log.warning("parsing job %s failed: %s", getattr(function, "__name__", function), value)
            raise JobFailed(READ_FAILURE)
        result: R = value  # the only other status is OK
        return result

    async def close(self) -> None:
        """Kills every worker and waits until each has exited. Idempotent."""
        self._closed = True
        for worker in self._idle:
            self._kill(worker)
        self._idle.clear()
        processes = [p for p in self._started if p.pid is not None]  # not those still being started
        for process in processes:
            process.kill()
        await asyncio.gather(*(asyncio.to_thread(p.join, JOIN_SECONDS) for p in processes))
        self._started.clear()

    async def _start(self) -> _Worker:
        parent_end, child_end = socket.socketpair()
        process = self._context.Process(
            target=serve, args=(child_end, self._limits.memory_limit_bytes), name=self._name, daemon=True,
        )
        self._started.add(process)  # from here close() kills it, even if this start is abandoned
        try:
            # On a thread: the first start waits for the forkserver's imports. The thread owns
            # child_end until the start is done, so a cancelled caller cannot close it under it.
            await asyncio.to_thread(_launch, process, child_end)
        except OSError as exc:
            parent_end.close()
            self._started.discard(process)
            log.error("a parsing worker could not be started: %s", exc)
            raise WorkerCrashed(READ_FAILURE) from exc
        except BaseException:  # cancelled: a worker that started anyway exits when its socket closes
            parent_end.close()
            raise
        reader, writer = await asyncio.open_unix_connection(sock=parent_end, limit=MAX_RESULT_BYTES)
        log.info("%s worker %s started", self._name, process.pid)
        return _Worker(process, reader, writer)

    async def _exchange(
        self, worker: _Worker, function: Callable[..., Any], args: tuple[Any, ...]
    ) -> tuple[str, Any]:
        job = pickle.dumps((function, args), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            async with asyncio.timeout(self._limits.timeout_seconds):
                worker.writer.write(HEADER.pack(len(job)) + job)
                await worker.writer.drain()
                (size,) = HEADER.unpack(await worker.reader.readexactly(HEADER.size))
                if size > MAX_RESULT_BYTES:
                    raise WorkerCrashed(READ_FAILURE)
                frame = await worker.reader.readexactly(size)
        except TimeoutError as exc:
            log.warning("%s worker %s passed the %s s limit; killed", self._name, worker.process.pid,
                        self._limits.timeout_seconds)
            raise JobTimedOut("The document could not be read in time.") from exc
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            log.warning("%s worker %s died during a job (exit code %s)", self._name, worker.process.pid,
                        worker.process.exitcode)
            raise WorkerCrashed(READ_FAILURE) from exc
        status, value = pickle.loads(frame)
        return str(status), value

    def _kill(self, worker: _Worker) -> None:
        """SIGKILL now; its exit is collected off the loop (and waited for by `close()`)."""
        worker.process.kill()
        worker.writer.close()
        reaped = asyncio.get_running_loop().run_in_executor(None, worker.process.join, JOIN_SECONDS)
        reaped.add_done_callback(lambda _: self._started.discard(worker.process))


def _launch(process: BaseProcess, child_end: socket.socket) -> None:
    try:
        process.start()
    finally:
        child_end.close()  # the worker has its own copy now
