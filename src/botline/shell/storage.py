"""The one abstraction over where shell files live: `FileStore` (local disk or an S3-compatible store).

A store holds many users' trees; each call names the tree with a `UserRoot` and a path inside it with a
`ShellPath`, so no call can say "outside". Writes are streamed in, reads streamed out: no file is ever
held whole in memory.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from botline.shell.paths import ShellPath

CHUNK_BYTES = 256 * 1024
SAFE_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class ShellError(Exception):
    """A storage answer the API maps to a status: `status` and a message naming what went wrong."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ShellError):
    status = 404


class Conflict(ShellError):
    """A file where a directory is needed, or the other way round."""

    status = 409


class TooLarge(ShellError):
    status = 413


class QuotaExceeded(ShellError):
    status = 507


def _component(value: str) -> str:
    """An id as one directory name or key segment: itself when plainly safe, else a hash of it."""
    if SAFE_ID.match(value):
        return value
    return "h-" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


@dataclass(frozen=True)
class UserRoot:
    """One shell user's tree: `account/user`, each segment safe to put in a path or an object key.

    The shell user id (any text up to 256 characters) is always hashed, so two ids never share a tree
    and no id can shape a path."""

    account_id: str
    shell_user_id: str

    @property
    def account_segment(self) -> str:
        return _component(self.account_id)

    @property
    def user_segment(self) -> str:
        return "u-" + hashlib.sha256(self.shell_user_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]


@dataclass(frozen=True)
class Entry:
    name: str
    is_directory: bool
    size: int | None
    modified: datetime
    created: datetime

    def wire(self) -> dict[str, object]:
        return {"name": self.name, "isDirectory": self.is_directory, "size": self.size,
                "lastModifiedUtc": iso_utc(self.modified), "createdAtUtc": iso_utc(self.created)}


def iso_utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class FileStore(ABC):
    """Files of every shell user. Paths are already normalised (ShellPath); roots already safe (UserRoot)."""

    @abstractmethod
    async def listing(self, root: UserRoot, path: ShellPath, *, limit: int) -> list[Entry]:
        """The directory's entries (at most `limit`), directories first then by name; NotFound, Conflict."""

    @abstractmethod
    async def stat(self, root: UserRoot, path: ShellPath) -> Entry | None:
        """The file or directory there; None when there is none (or it is a symlink or anything else)."""

    @abstractmethod
    def read(self, root: UserRoot, path: ShellPath) -> AsyncGenerator[bytes, None]:
        """The file's bytes in chunks; NotFound when it is not a regular file."""

    @abstractmethod
    async def write(self, root: UserRoot, path: ShellPath, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int:
        """Streams `chunks` into the file (missing parent directories are created) and returns its size.
        The file appears whole or not at all: past `max_bytes` it raises TooLarge and leaves nothing."""

    @abstractmethod
    async def make_directory(self, root: UserRoot, path: ShellPath) -> None:
        """Creates the directory and its parents (nothing when it exists); Conflict if a file is in the way."""

    @abstractmethod
    async def delete_file(self, root: UserRoot, path: ShellPath) -> None:
        """NotFound when there is no file there (a directory is not a file)."""

    @abstractmethod
    async def delete_directory(self, root: UserRoot, path: ShellPath) -> None:
        """Removes the directory and everything in it; NotFound when there is none."""

    @abstractmethod
    async def usage(self, root: UserRoot | None, account_id: str, *, limit: int) -> int:
        """Bytes held by one user (`root`) or the whole account (`root` None); stops counting after `limit`
        entries and answers a number past any quota then (a tree that large is full)."""

    async def close(self) -> None:
        return None
