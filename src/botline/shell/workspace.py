"""A turn's working directory for the bash sandbox, over whichever storage holds the user's files.

- Local disk (LocalWorkspaces): the sandbox mounts the user's files themselves, or a scratch directory
  for the turn with the files read-only beside it.
- S3 (SyncedWorkspaces): the sandbox needs a real directory, so each turn gets a local copy under
  `shell.scratch_path`. Before each command, under a lease on the user in the Store (so two turns of one
  user, on one replica or two, take turns command by command), the copy takes what changed in S3 since
  it last looked (by ETag: new, changed and deleted files); after the command, what the command changed
  (new, changed, deleted files and directories, by size and modification time) is written back, within
  the quotas: past them nothing is written and the model is told. Without `allowDataPersistence` the copy
  is taken once, mounted read-only, and nothing is ever written back. The copy goes when the turn ends.
Files are read from the copy without following symlinks (the command may have left some), and only
regular files and directories travel.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from botline.domain.base import random_hex
from botline.engine.locks import SessionLocks
from botline.shell.files import ShellFiles
from botline.shell.local import LocalFileStore
from botline.shell.paths import InvalidPath, ShellPath
from botline.shell.s3 import RemoteFile, S3FileStore
from botline.shell.settings import ShellSettings
from botline.shell.storage import Conflict, NotFound, QuotaExceeded, ShellError, TooLarge, UserRoot
from botline.store.base import LockRepository

Signature = tuple[int, int]
"""A local file as seen after a command: (size, modification time in ns)."""


class WorkspaceError(Exception):
    """The user's files could not be made ready for the command; the message is for the model."""


@dataclass
class Mounts:
    """What one command sees: `workdir` at /home/user, `read_only` (if any) at /home/user/files."""

    workdir: Path
    read_only: Path | None = None
    stored: bool = False
    """Files in `workdir` are the user's own (after the command, where a copy is written back)."""
    notes: list[str] = field(default_factory=list)
    """What the model is told after the command (changes that could not be kept)."""


@dataclass
class LocalTree:
    files: dict[str, Signature] = field(default_factory=dict)
    directories: set[str] = field(default_factory=set)


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_under(top: Path, parts: tuple[str, ...]) -> int:
    """A descriptor of the directory `top/parts...`, no name after `top` followed if it is a symlink."""
    fd = os.open(top, DIR_FLAGS)
    try:
        for name in parts:
            next_fd = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def local_tree(top: Path, *, limit: int, start: tuple[str, ...] = ()) -> LocalTree:
    """Regular files and directories under `top/start` by '/'-joined path from `top`; symlinks are neither
    followed nor listed (blocking: run it in a thread). WorkspaceError past `limit` entries."""
    tree = LocalTree()
    pending = [start]
    while pending:
        parts = pending.pop()
        try:
            fd = _open_under(top, parts)
        except OSError:
            continue
        try:
            with os.scandir(fd) as scan:
                for item in scan:
                    if len(tree.files) + len(tree.directories) >= limit:
                        raise WorkspaceError(f"There are more than {limit} files and directories in the "
                                             "working directory: delete some.")
                    info = item.stat(follow_symlinks=False)
                    key = "/".join((*parts, item.name))
                    if stat.S_ISDIR(info.st_mode):
                        tree.directories.add(key)
                        pending.append((*parts, item.name))
                    elif stat.S_ISREG(info.st_mode):
                        tree.files[key] = (info.st_size, info.st_mtime_ns)
        finally:
            os.close(fd)
    return tree


def read_regular(top: Path, path: ShellPath, max_bytes: int) -> bytes | None:
    """The bytes of the regular file at `path` under `top`, no name followed if it is a symlink; None when
    there is none or it is larger than `max_bytes` (blocking: run it in a thread)."""
    try:
        fd = _open_under(top, path.parts[:-1])
    except OSError:
        return None
    try:
        file_fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        info = os.fstat(file_fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        os.set_blocking(file_fd, True)
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(file_fd, 1024 * 1024):
            size += len(chunk)
            if size > max_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(file_fd)


class Workspace(ABC):
    """One turn's view of one user's files."""

    @abstractmethod
    def command(self) -> AbstractAsyncContextManager[Mounts]:
        """Around one command: the directories to mount; after it, its changes are kept (where they must be
        copied back). WorkspaceError when the files cannot be made ready."""

    @abstractmethod
    async def close(self) -> None:
        """The turn ended: scratch space goes."""


class Workspaces(ABC):
    @abstractmethod
    def open(self, root: UserRoot, persist: bool) -> Workspace:
        """A workspace for one turn (nothing is made before its first command)."""

    @abstractmethod
    async def close(self) -> None:
        """At shutdown."""


class LocalWorkspace(Workspace):
    def __init__(self, disk: LocalFileStore, root: UserRoot, persist: bool) -> None:
        self._disk = disk
        self._root = root
        self._persist = persist
        self._scratch: Path | None = None

    @asynccontextmanager
    async def command(self) -> AsyncIterator[Mounts]:
        files = await asyncio.to_thread(self._disk.files_dir, self._root)
        if self._persist:
            yield Mounts(files, stored=True)
            return
        if self._scratch is None:
            self._scratch = await asyncio.to_thread(self._disk.scratch_dir, self._root)
        yield Mounts(self._scratch, files)

    async def close(self) -> None:
        if self._scratch is not None:
            await asyncio.to_thread(shutil.rmtree, self._scratch, True)
            self._scratch = None


class LocalWorkspaces(Workspaces):
    def __init__(self, disk: LocalFileStore) -> None:
        self._disk = disk

    def open(self, root: UserRoot, persist: bool) -> Workspace:
        return LocalWorkspace(self._disk, root, persist)

    async def close(self) -> None:
        return None


class SyncedWorkspaces(Workspaces):
    """`owner`: who must own the copies (the sandbox user, when botline runs as root)."""

    def __init__(self, files: ShellFiles, remote: S3FileStore, settings: ShellSettings, leases: LockRepository,
                 owner: tuple[int, int] | None) -> None:
        self._files = files
        self._remote = remote
        self._settings = settings
        self._leases = SessionLocks(leases)
        self._owner = owner

    def open(self, root: UserRoot, persist: bool) -> Workspace:
        copy = LocalFileStore(self._settings.scratch_path / f"turn-{random_hex(8)}", owner=self._owner)
        return SyncedWorkspace(self._files, self._remote, copy, self._settings, self._leases, root, persist)

    async def close(self) -> None:
        await self._leases.close()


class SyncedWorkspace(Workspace):
    def __init__(self, files: ShellFiles, remote: S3FileStore, copy: LocalFileStore, settings: ShellSettings,
                 leases: SessionLocks, root: UserRoot, persist: bool) -> None:
        self._files = files
        self._remote = remote
        self._copy = copy
        self._s = settings
        self._leases = leases
        self._root = root
        self._persist = persist
        self._scratch: Path | None = None
        self._remote_known: dict[str, RemoteFile] = {}
        """S3's files as the copy last took them (or wrote them)."""
        self._remote_directories: set[str] = set()
        self._local_known = LocalTree()
        """The copy as it was after the last pull or write-back: what a command changed is the difference."""
        self._pulled = False

    @asynccontextmanager
    async def command(self) -> AsyncIterator[Mounts]:
        files = await asyncio.to_thread(self._copy.files_dir, self._root)
        if not self._persist:
            if not self._pulled:
                await self._pull(files)
                self._scratch = await asyncio.to_thread(self._copy.scratch_dir, self._root)
            assert self._scratch is not None
            yield Mounts(self._scratch, files)
            return
        async with self._leases.hold(f"shell-user:{self._root.account_segment}:{self._root.user_segment}"):
            await self._pull(files)
            mounts = Mounts(files, stored=True)
            yield mounts
            problem = await self._push(files)
            if problem:
                mounts.stored = False
                mounts.notes.append(problem)

    async def _pull(self, top: Path) -> None:
        """Brings the copy up to date with S3: what changed there since the last look (everything, the first time)."""
        try:
            tree = await self._remote.tree(self._root, limit=self._s.max_entries)
        except TooLarge as exc:
            raise WorkspaceError(f"The user's files cannot be opened here: {exc.message}") from None
        total = sum(file.size for file in tree.files.values())
        if total > self._s.user_quota_bytes:
            raise WorkspaceError(f"The user's files ({total} bytes) are more than their quota "
                                 f"({self._s.user_quota_bytes} bytes): ask them to delete some.")
        copy, root = self._copy, self._root
        for gone in sorted(self._remote_directories - tree.directories, reverse=True):
            with suppress(ShellError):
                await copy.delete_directory(root, ShellPath.parse(gone))
            self._local_known.directories.discard(gone)
        for gone in set(self._remote_known) - set(tree.files):
            with suppress(ShellError):
                await copy.delete_file(root, ShellPath.parse(gone))
            self._local_known.files.pop(gone, None)
        for directory in sorted(tree.directories - self._remote_directories):
            with suppress(ShellError):
                await copy.make_directory(root, ShellPath.parse(directory))
        for key, file in tree.files.items():
            if self._remote_known.get(key) == file:
                continue
            path = ShellPath.parse(key)
            with suppress(Conflict, NotFound):  # a local directory in the way; an object deleted meanwhile
                async with aclosing(self._remote.read(root, path)) as chunks:
                    await copy.write(root, path, chunks, max_bytes=self._s.user_quota_bytes)
        self._remote_known, self._remote_directories = dict(tree.files), set(tree.directories)
        self._pulled = True
        pulled = await asyncio.to_thread(local_tree, top, limit=self._s.max_entries)
        for key in tree.files:
            if key in pulled.files:
                self._local_known.files[key] = pulled.files[key]
        self._local_known.directories |= tree.directories & pulled.directories

    async def _push(self, top: Path) -> str | None:
        """Writes what the command changed back to S3; what the model is told when it could not."""
        try:
            now = await asyncio.to_thread(local_tree, top, limit=self._s.max_entries)
        except WorkspaceError as exc:
            return f"The changes were not saved to the user's files: {exc}"
        known = self._local_known
        changed = sorted(key for key, signature in now.files.items() if known.files.get(key) != signature)
        deleted = sorted(set(known.files) - set(now.files))
        made = sorted(now.directories - self._remote_directories)  # S3 forgets a prefix once its files go
        removed = sorted(known.directories - now.directories, reverse=True)
        if not (changed or deleted or made or removed):
            return None
        invalid = [key for key in (*changed, *made) if not _valid(key)]
        if invalid:
            return (f"The changes were not saved to the user's files: {invalid[0]!r} is not a name their "
                    "storage can hold (no backslashes or control characters). Rename it.")
        replaced = sum(self._remote_known[key].size for key in (*changed, *deleted) if key in self._remote_known)
        growth = sum(now.files[key][0] for key in changed) - replaced
        try:
            async with self._room(growth):
                await self._write_back(top, changed, deleted, made, removed)
        except QuotaExceeded as exc:
            return f"The changes were not saved to the user's files: {exc.message}"
        except ShellError as exc:
            return f"Some changes were not saved to the user's files: {exc.message}"
        self._local_known = now
        tree = await self._remote.tree(self._root, limit=self._s.max_entries)
        self._remote_known, self._remote_directories = dict(tree.files), set(tree.directories)
        return None

    @asynccontextmanager
    async def _room(self, growth: int) -> AsyncIterator[None]:
        """A quota reservation for what the write-back adds (none when it frees space: deleting files is
        always allowed)."""
        if growth <= 0:
            yield
            return
        async with self._files.quotas.reserve(self._root, growth, growth):
            yield

    async def _write_back(self, top: Path, changed: list[str], deleted: list[str], made: list[str],
                          removed: list[str]) -> None:
        remote, root = self._remote, self._root
        for key in removed:
            with suppress(NotFound):
                await remote.delete_directory(root, ShellPath.parse(key))
        for key in deleted:
            with suppress(NotFound):
                await remote.delete_file(root, ShellPath.parse(key))
        for key in made:
            await remote.make_directory(root, ShellPath.parse(key))
        for key in changed:
            path = ShellPath.parse(key)
            async with aclosing(self._copy.read(root, path)) as chunks:
                await remote.write(root, path, chunks, max_bytes=self._s.max_file_bytes)

    async def close(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self._copy.base, True)


def _valid(key: str) -> bool:
    try:
        ShellPath.parse(key)
    except InvalidPath:
        return False
    return True
