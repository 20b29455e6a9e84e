"""Bytes in the Store: the files of a session's answers, and blobs shared by key for a while.

Both live in the Store, not in one process, so every replica serves them: a chat page reloaded on
another replica shows the answer's image and plays its audio, and a synthesis paid for on one
replica is reused by the next (speech/cache.py). Answer files belong to their session: deleting the
session (by the API, by expiry, with its chat client), emptying the conversation or dropping an
answer for a retry deletes them in the same transaction, so none is left behind. Shared blobs
expire after their TTL.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from botline.domain.answer_media import AnswerMedia


class MediaAdded(StrEnum):
    STORED = "stored"
    NO_MESSAGE = "no_message"
    """The answer is not (or no longer) in its session: nothing was written."""
    FULL = "full"
    """The session's files would pass their byte budget: nothing was written."""


class MediaRepository(ABC):
    """The files of a session's answers. Reads are scoped by session: a file id of another session is
    not found."""

    @abstractmethod
    async def add(self, media: AnswerMedia, data: bytes, *, session_bytes: int) -> MediaAdded:
        """Stores `data` (len == media.size) for an answer of the session, atomically checking that the
        answer is stored in that session and that the session's files stay within `session_bytes`."""

    @abstractmethod
    async def get(self, session_id: str, media_id: str) -> tuple[AnswerMedia, bytes] | None: ...

    @abstractmethod
    async def list(self, session_id: str) -> list[AnswerMedia]:
        """The session's files (without their bytes), in the order they were added."""


@dataclass(frozen=True)
class Blob:
    content_type: str
    data: bytes


class BlobRepository(ABC):
    """Blobs shared by every replica under a key the caller derives (a hash), for a limited time."""

    @abstractmethod
    async def put(self, key: str, blob: Blob, *, now: datetime, ttl_seconds: float) -> None:
        """Stores (or replaces) the blob for `ttl_seconds` from `now`."""

    @abstractmethod
    async def get(self, key: str, *, now: datetime) -> Blob | None:
        """The blob while it has not expired at `now`."""

    @abstractmethod
    async def purge(self, now: datetime, *, limit: int = 500) -> int:
        """Deletes up to `limit` blobs that expired at or before `now` (where the backend does not
        expire them itself); returns how many."""
