"""Shared pieces of the SQLite repositories: one aiosqlite connection, JSON documents.

aiosqlite runs every call in its one worker thread, and each call is a hop there and back (a queue,
a thread wake-up, a future resolved on the event loop). A repository call is therefore one job that
runs its statements and the commit together (`_Repo._run`): one hop instead of one per statement,
and no other coroutine's statement can land inside its transaction. Jobs submitted while the
thread is busy wait together and then go as one batch (`_Batcher`): one hop, one wake-up of the
event loop and one commit for all of them, each job still all-or-nothing (its own savepoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import aiosqlite
import orjson
from pydantic import BaseModel

from botline.store.base import ConflictError, ReportsErrors, StoreUnavailable, wrap_public_coroutines
from botline.store.documents import load_many

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")
P = ParamSpec("P")
C = TypeVar("C")


def _reachable(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """The one boundary where SQLite failures (locked, disk full, closed) become Store errors."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except sqlite3.IntegrityError as exc:
            raise ConflictError(str(exc)) from exc
        except (sqlite3.Error, ValueError) as exc:  # aiosqlite raises ValueError once the connection is closed
            raise StoreUnavailable(f"SQLite is not usable: {exc}") from exc

    return wrapper


def reachable_methods(cls: type[C]) -> type[C]:
    """Puts every public coroutine method that `cls` defines behind `_reachable`."""
    return wrap_public_coroutines(cls, _reachable)


def _dump(model: BaseModel) -> str:
    return model.model_dump_json(by_alias=True)


def json_set_fields(fields: Mapping[str, Any], column: str = "data") -> tuple[str, list[str]]:
    """`json_set(data, '$.a', json(?), ...)` and its parameters: each field (a path of stored
    camelCase names, ours, never a caller's) set to its JSON value, in one expression."""
    expression = f"json_set({column}" + "".join(f", '$.{path}', json(?)" for path in fields) + ")"
    return expression, [orjson.dumps(value).decode() for value in fields.values()]


def _load_all(model_type: type[ModelT], rows: Iterable[sqlite3.Row]) -> list[ModelT]:
    return load_many(model_type, (row[0] for row in rows))


Job = Callable[[sqlite3.Connection], Any]
Outcome = tuple[bool, Any]
"""(True, the job's result) or (False, the exception it raised)."""


class _Batcher:
    """The jobs of every repository on one connection, run by aiosqlite's thread a batch at a time.

    All state lives on the event loop; the thread only runs the batch it was handed and posts the
    outcomes back with one `call_soon_threadsafe`. A job arriving while a batch runs waits for the
    next one, so under load one hop carries many jobs; alone, a job goes at once, as before.
    Uses aiosqlite's job queue (`_tx`, `_conn`, `_running`: not public, stable since 0.17); jobs
    run in the order they were submitted.
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._waiting: list[tuple[Job, asyncio.Future[Any]]] = []
        self._busy = False

    async def run(self, work: Job) -> Any:
        if not self._db._running:
            raise ValueError("Connection closed")
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((work, future))
        if not self._busy:
            self._send()
        return await future

    def _send(self) -> None:
        batch, self._waiting = self._waiting, []
        if not self._db._running:
            _settle(batch, [(False, ValueError("Connection closed"))] * len(batch))
            return
        self._busy = True
        loop = asyncio.get_running_loop()
        self._db._tx.put_nowait((None, lambda: self._in_thread(loop, batch)))

    def _in_thread(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        try:
            outcomes = _run_batch(self._db._conn, [work for work, _ in batch])
        except BaseException as exc:  # the connection is gone: every job hears of it
            outcomes = [(False, exc)] * len(batch)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(self._done, batch, outcomes)

    def _done(self, batch: list[tuple[Job, asyncio.Future[Any]]], outcomes: list[Outcome]) -> None:
        self._busy = False
        _settle(batch, outcomes)
        if self._waiting:
            self._send()


def _settle(batch: list[tuple[Job, asyncio.Future[Any]]], outcomes: list[Outcome]) -> None:
    for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
        if future.done():  # the caller was cancelled; the job ran (or failed) all the same
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _run_batch(conn: sqlite3.Connection, jobs: list[Job]) -> list[Outcome]:
    """Runs `jobs` in one transaction, each under its own savepoint (a job that raises leaves
    nothing behind and the others stand), then commits. Should SQLite roll the whole transaction
    back (disk full, I/O error), or the commit fail, no job was stored and every one fails."""
    if len(jobs) == 1:
        try:
            result = jobs[0](conn)
        except BaseException as exc:  # handed to the job's caller
            conn.rollback()
            return [(False, exc)]
        try:
            conn.commit()
        except BaseException as exc:
            conn.rollback()
            return [(False, exc)]
        return [(True, result)]
    outcomes: list[Outcome] = []
    try:
        if not conn.in_transaction:
            conn.execute("BEGIN")
        for job in jobs:
            conn.execute("SAVEPOINT job")
            try:
                outcomes.append((True, job(conn)))
            except BaseException as exc:  # handed to the job's caller
                if not conn.in_transaction:  # SQLite dropped the whole transaction
                    raise
                conn.execute("ROLLBACK TO job")
                outcomes.append((False, exc))
            conn.execute("RELEASE job")
        conn.commit()
    except BaseException as exc:
        if conn.in_transaction:
            conn.rollback()
        return [(False, exc)] * len(jobs)
    return outcomes


_batchers: weakref.WeakKeyDictionary[aiosqlite.Connection, _Batcher] = weakref.WeakKeyDictionary()


def _batcher(db: aiosqlite.Connection) -> _Batcher:
    batcher = _batchers.get(db)
    if batcher is None:
        batcher = _batchers[db] = _Batcher(db)
    return batcher


class _Repo(ReportsErrors):
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._batcher = _batcher(db)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `work` on the connection's thread and commits (rolls back if it raises), as one job;
        no other job's statement runs inside its transaction."""
        result: T = await self._batcher.run(work)
        return result

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; returns the number of rows it changed."""
        try:
            return await self._run(lambda conn: conn.execute(sql, params).rowcount)
        except sqlite3.IntegrityError as exc:
            raise ConflictError(str(exc)) from exc

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return await self._run(lambda conn: conn.execute(sql, params).fetchall())

    async def _one(self, model_type: type[ModelT], sql: str, params: Sequence[Any]) -> ModelT | None:
        rows = await self._rows(sql, params)
        return model_type.model_validate_json(rows[0][0]) if rows else None

    async def _all(self, model_type: type[ModelT], sql: str, params: Sequence[Any]) -> list[ModelT]:
        return _load_all(model_type, await self._rows(sql, params))
