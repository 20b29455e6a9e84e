"""Shared pieces of the SQLite repositories: one aiosqlite connection, JSON documents."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar

import aiosqlite
from pydantic import BaseModel

from botline.store.base import ConflictError, ReportsErrors, StoreUnavailable, wrap_public_coroutines

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


def _load_all(model_type: type[ModelT], rows: Iterable[sqlite3.Row]) -> list[ModelT]:
    return [model_type.model_validate_json(row[0]) for row in rows]


class _Repo(ReportsErrors):
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cursor = await self._db.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise ConflictError(str(exc)) from exc
        await self._db.commit()
        return cursor.rowcount

    async def _one(self, model_type: type[ModelT], sql: str, params: Sequence[Any]) -> ModelT | None:
        async with self._db.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return None if row is None else model_type.model_validate_json(row[0])

    async def _all(self, model_type: type[ModelT], sql: str, params: Sequence[Any]) -> list[ModelT]:
        async with self._db.execute(sql, params) as cursor:
            return _load_all(model_type, await cursor.fetchall())
