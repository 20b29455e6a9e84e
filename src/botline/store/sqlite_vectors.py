"""The embedded vector index on SQLite: `kb_vectors` rows (float32 blobs) and `kb_vector_sets` generations.

Searched in memory per replica (store/vector_cache.py); each write bumps the collection's generation in
the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import groupby

import aiosqlite

from botline.store.sqlite_base import _Repo, reachable_methods
from botline.store.vector_cache import CollectionMatrix, EmbeddedVectors, Generations, MatrixBuilder
from botline.store.vectors import Vector, VectorEntry, VectorHit

CHUNK = 500


def _bump(conn: sqlite3.Connection, collection_id: str) -> None:
    conn.execute("UPDATE kb_vector_sets SET generation = generation + 1 WHERE collection_id = ?", (collection_id,))


@reachable_methods
class SqliteVectors(_Repo, EmbeddedVectors):
    def __init__(self, db: aiosqlite.Connection) -> None:
        _Repo.__init__(self, db)
        EmbeddedVectors.__init__(self)

    async def search(
        self, collection_ids: Sequence[str], vector: Vector, model_id: str, *, top: int
    ) -> list[VectorHit]:
        """EmbeddedVectors' search, behind this backend's error mapping."""
        return await EmbeddedVectors.search(self, collection_ids, vector, model_id, top=top)

    async def upsert(self, model_id: str, entries: Sequence[VectorEntry]) -> None:
        ordered = sorted(entries, key=lambda e: e.collection_id)

        def work(conn: sqlite3.Connection) -> None:
            for collection_id, group in groupby(ordered, key=lambda e: e.collection_id):
                rows = list(group)
                stored = conn.execute("SELECT model FROM kb_vector_sets WHERE collection_id = ?",
                                      (collection_id,)).fetchone()
                if stored is not None and stored[0] != model_id:
                    conn.execute("DELETE FROM kb_vectors WHERE collection_id = ?", (collection_id,))
                conn.execute(
                    "INSERT INTO kb_vector_sets (collection_id, account_id, model, generation) VALUES (?, ?, ?, 1)"
                    " ON CONFLICT (collection_id) DO UPDATE SET model = excluded.model,"
                    " generation = kb_vector_sets.generation + 1", (collection_id, rows[0].account_id, model_id))
                conn.executemany(
                    "INSERT INTO kb_vectors (collection_id, document_id, version, vector) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (collection_id, document_id) DO UPDATE SET version = excluded.version,"
                    " vector = excluded.vector WHERE excluded.version >= kb_vectors.version",
                    [(collection_id, e.document_id, e.version, e.vector.astype("<f4").tobytes()) for e in rows])

        await self._run(work)

    async def delete(self, collection_id: str, document_ids: Sequence[str]) -> None:
        ids = list(document_ids)

        def work(conn: sqlite3.Connection) -> None:
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start:start + CHUNK]
                conn.execute(f"DELETE FROM kb_vectors WHERE collection_id = ? AND document_id IN"
                             f" ({','.join('?' * len(chunk))})", (collection_id, *chunk))
            _bump(conn, collection_id)

        if ids:
            await self._run(work)

    async def drop(self, collection_id: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM kb_vectors WHERE collection_id = ?", (collection_id,))
            conn.execute("UPDATE kb_vector_sets SET model = '', generation = generation + 1 WHERE collection_id = ?",
                         (collection_id,))

        await self._run(work)

    async def count(self, collection_id: str, model_id: str) -> int:
        rows = await self._rows("SELECT count(*) FROM kb_vectors v JOIN kb_vector_sets s USING (collection_id)"
                                " WHERE v.collection_id = ? AND s.model = ?", (collection_id, model_id))
        return int(rows[0][0])

    async def _generations(self, collection_ids: Sequence[str]) -> Generations:
        rows = await self._rows(f"SELECT collection_id, model, generation FROM kb_vector_sets WHERE collection_id IN"
                                f" ({','.join('?' * len(collection_ids))})", tuple(collection_ids))
        return {row[0]: (row[1], int(row[2])) for row in rows}

    async def _load(self, collection_id: str) -> CollectionMatrix:
        def work(conn: sqlite3.Connection) -> CollectionMatrix:
            generation = conn.execute("SELECT generation FROM kb_vector_sets WHERE collection_id = ?",
                                      (collection_id,)).fetchone()
            expected = conn.execute("SELECT count(*) FROM kb_vectors WHERE collection_id = ?",
                                    (collection_id,)).fetchone()[0]
            builder = MatrixBuilder(collection_id, int(expected))
            for document_id, version, vector in conn.execute(
                    "SELECT document_id, version, vector FROM kb_vectors WHERE collection_id = ?", (collection_id,)):
                builder.add(document_id, int(version), vector)
            return builder.build(int(generation[0]) if generation else 0)

        return await self._run(work)
