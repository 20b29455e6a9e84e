"""SQLite repositories of bytes: answer files (table answer_media) and shared blobs (shared_blobs).

Answer files are deleted with their session and messages by sqlite_conversations.py, in the same
transactions (DELETE_MEDIA_OF_SESSIONS, DELETE_MEDIA_AFTER).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from botline.domain.answer_media import AnswerMedia
from botline.store.media import Blob, BlobRepository, MediaAdded, MediaRepository
from botline.store.sqlite_base import _dump, _Repo, reachable_methods

ADD_MEDIA = (
    "INSERT INTO answer_media (id, session_id, message_id, size, meta, data)"
    " SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM messages WHERE id = ? AND session_id = ?)"
)
SESSION_BYTES = "SELECT coalesce(sum(size), 0) FROM answer_media WHERE session_id = ?"


@reachable_methods
class SqliteMedia(_Repo, MediaRepository):
    async def add(self, media: AnswerMedia, data: bytes, *, session_bytes: int) -> MediaAdded:
        params = (media.id, media.session_id, media.message_id, len(data), _dump(media), data, media.message_id,
                  media.session_id)

        def work(conn: sqlite3.Connection) -> MediaAdded:
            used = int(conn.execute(SESSION_BYTES, (media.session_id,)).fetchone()[0])
            if used + len(data) > session_bytes:
                return MediaAdded.FULL
            return MediaAdded.STORED if conn.execute(ADD_MEDIA, params).rowcount else MediaAdded.NO_MESSAGE

        return await self._run(work)

    async def get(self, session_id: str, media_id: str) -> tuple[AnswerMedia, bytes] | None:
        rows = await self._rows("SELECT meta, data FROM answer_media WHERE id = ? AND session_id = ?",
                                (media_id, session_id))
        return (AnswerMedia.model_validate_json(rows[0][0]), bytes(rows[0][1])) if rows else None

    async def list(self, session_id: str) -> list[AnswerMedia]:
        return await self._all(AnswerMedia, "SELECT meta FROM answer_media WHERE session_id = ? ORDER BY seq",
                               (session_id,))


@reachable_methods
class SqliteBlobs(_Repo, BlobRepository):
    async def put(self, key: str, blob: Blob, *, now: datetime, ttl_seconds: float) -> None:
        await self._write(
            "INSERT OR REPLACE INTO shared_blobs (key, expires_ts, content_type, data) VALUES (?, ?, ?, ?)",
            (key, now.timestamp() + ttl_seconds, blob.content_type, blob.data))

    async def get(self, key: str, *, now: datetime) -> Blob | None:
        rows = await self._rows("SELECT content_type, data FROM shared_blobs WHERE key = ? AND expires_ts > ?",
                                (key, now.timestamp()))
        return Blob(content_type=str(rows[0][0]), data=bytes(rows[0][1])) if rows else None

    async def purge(self, now: datetime, *, limit: int = 500) -> int:
        return await self._write(
            "DELETE FROM shared_blobs WHERE key IN (SELECT key FROM shared_blobs WHERE expires_ts <= ? LIMIT ?)",
            (now.timestamp(), limit))
