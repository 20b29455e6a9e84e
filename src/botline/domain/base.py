"""Base model, identifiers and time helpers used by every domain model."""

from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """A model that speaks camelCase on the wire and snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
    )

    def wire(self, **kwargs: Any) -> dict[str, Any]:
        """The JSON-ready, camelCase dict of this model."""
        return self.model_dump(mode="json", by_alias=True, **kwargs)


IDS_PER_READ = 1024


class _RandomBytes:
    """os.urandom read in batches. One read per id (uuid4) cost a system call that lets go of the GIL,
    and taking it back behind the SQLite thread was a measurable share of a web-chat prompt."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0

    def take(self, size: int) -> bytes:
        with self._lock:
            if self._at + size > len(self._buffer):
                self._buffer, self._at = os.urandom(size * IDS_PER_READ), 0
            chunk = self._buffer[self._at:self._at + size]
            self._at += size
        return chunk

    def forget(self) -> None:
        """In a forked child: never hand out the bytes the parent also holds."""
        self._buffer, self._at = b"", 0


_random = _RandomBytes()
os.register_at_fork(after_in_child=_random.forget)


def new_id() -> str:
    """A new random (version 4) UUID string; every object id is one."""
    return str(uuid.UUID(bytes=_random.take(16), version=4))


def random_hex(size: int) -> str:
    """`size` random bytes as hex, from the same batches (request ids, completion ids)."""
    return _random.take(size).hex()


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)
