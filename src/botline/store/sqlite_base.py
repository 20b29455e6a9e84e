"""Shared pieces of the SQLite repositories: one aiosqlite connection, JSON documents.

aiosqlite runs every call in its one worker thread, and each call is a hop there and back (a queue,
a thread wake-up, a future resolved on the event loop). A write is therefore one job that runs its
statements and the commit together (`_Repo._run`): one hop instead of one per statement, and no
other coroutine's statement can land inside its transaction. A read is `execute_fetchall` (one hop,
where `execute` + `fetchone` + closing the cursor were three).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar, cast

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


class _Repo(ReportsErrors):
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `work` on the connection's thread and commits (rolls back if it raises), as one job.

        Uses aiosqlite's job queue (`_execute`, `_conn`: not public, stable since 0.17); the jobs
        run one after another, so the transaction is never interleaved with another coroutine's.
        """
        conn = self._db._conn

        def job() -> T:
            try:
                result = work(conn)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return result

        execute = cast("Callable[[Callable[[], T]], Awaitable[T]]", self._db._execute)  # a string: no runtime alias
        return await execute(job)

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; returns the number of rows it changed."""
        try:
            return await self._run(lambda conn: conn.execute(sql, params).rowcount)
        except sqlite3.IntegrityError as exc:
            raise ConflictError(str(exc)) from exc

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(await self._db.execute_fetchall(sql, params))

    async def _one(self, model_type: type[ModelT], sql: str, params: Sequence[Any]) -> ModelT | None:
        rows = await self._rows(sql, params)
        return model_type.model_validate_json(rows[0][0]) if rows else None

    async def _all(self, model_type: type[ModelT], sql: str, params: Sequence[Any]) -> list[ModelT]:
        return _load_all(model_type, await self._rows(sql, params))
