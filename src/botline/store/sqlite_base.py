"""Shared pieces of the SQLite repositories: one aiosqlite connection, JSON documents."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import aiosqlite
from pydantic import BaseModel

from botline.store.base import ConflictError

ModelT = TypeVar("ModelT", bound=BaseModel)


def _dump(model: BaseModel) -> str:
    return model.model_dump_json(by_alias=True)


def _load_all(model_type: type[ModelT], rows: Iterable[sqlite3.Row]) -> list[ModelT]:
    return [model_type.model_validate_json(row[0]) for row in rows]


class _Repo:
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
