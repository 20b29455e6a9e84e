"""Shell files on local disk: `{base}/{account}/{user}/files/...`, never following a symlink.

Every path is walked one name at a time from the user's root with `openat(O_NOFOLLOW | O_DIRECTORY)`,
so a symlink anywhere (one the bash tool made, say `ln -s /etc x`) ends the walk instead of leading
out; files are opened with O_NOFOLLOW too, and deletions use the same descriptors (`unlinkat`,
`shutil.rmtree(dir_fd=...)`, which on Linux resists symlink races). Blocking calls run in threads.
Uploads are written to `{user}/staging/` and renamed into place, so a file appears whole or not at all.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import stat
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from botline.domain.base import random_hex
from botline.shell.paths import ShellPath
from botline.shell.storage import CHUNK_BYTES, Conflict, Entry, FileStore, NotFound, TooLarge, UserRoot

FILES = "files"
STAGING = "staging"
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
"""O_NONBLOCK: opening a FIFO the sandbox left there must not hang a thread."""
FULL = 2**62
"""What `usage` answers for a tree too large to count: past any quota."""


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _entry(name: str, info: os.stat_result) -> Entry | None:
    """Regular files and directories only: symlinks, FIFOs and devices are not shown or served."""
    is_dir = stat.S_ISDIR(info.st_mode)
    if not is_dir and not stat.S_ISREG(info.st_mode):
        return None
    # Linux has no birth time in os.stat: the earlier of the change and modification times stands for it.
    return Entry(name=name, is_directory=is_dir, size=None if is_dir else info.st_size,
                 modified=_time(info.st_mtime), created=_time(min(info.st_ctime, info.st_mtime)))


class LocalFileStore(FileStore):
    """`owner`: (uid, gid) given to every file and directory made here, so the sandbox user (when botline
    runs as root) may change them."""

    def __init__(self, base: Path, *, owner: tuple[int, int] | None = None) -> None:
        self._base = base.resolve()
        self._owner = owner

    @property
    def base(self) -> Path:
        return self._base

    def files_dir(self, root: UserRoot) -> Path:
        """The user's tree on disk, created when missing (the bash sandbox mounts it)."""
        path = self._base / root.account_segment / root.user_segment / FILES
        self._ensure(path)
        return path

    def scratch_dir(self, root: UserRoot) -> Path:
        """A new empty directory beside the user's tree (a turn's scratch space when nothing persists)."""
        path = self._base / root.account_segment / root.user_segment / STAGING / f"scratch-{random_hex(8)}"
        self._ensure(path)
        return path

    def _ensure(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._owner is not None:
            os.chown(path, *self._owner)
            path.chmod(0o700)

    @contextmanager
    def _walk(self, root: UserRoot, parts: tuple[str, ...], *, create: bool = False) -> Iterator[int]:
        """A descriptor of the directory at `parts`; NotFound (or Conflict when creating) otherwise."""
        fd = os.open(self.files_dir(root), DIR_FLAGS)
        try:
            for name in parts:
                try:
                    next_fd = os.open(name, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise NotFound("Directory not found.") from None
                    with suppress(FileExistsError):
                        os.mkdir(name, 0o700, dir_fd=fd)
                        if self._owner is not None:
                            os.chown(name, *self._owner, dir_fd=fd, follow_symlinks=False)
                    next_fd = self._open_dir(fd, name, create)
                except OSError as exc:  # ENOTDIR (a file), ELOOP (a symlink)
                    raise (Conflict if create else NotFound)(
                        "A file is in the way of that path." if create else "Directory not found."
                    ) from exc
                os.close(fd)
                fd = next_fd
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def _open_dir(fd: int, name: str, create: bool) -> int:
        try:
            return os.open(name, DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise Conflict("A file is in the way of that path.") from exc

    async def listing(self, root: UserRoot, path: ShellPath, *, limit: int) -> list[Entry]:
        return await asyncio.to_thread(self._listing, root, path, limit)

    def _listing(self, root: UserRoot, path: ShellPath, limit: int) -> list[Entry]:
        with self._walk(root, path.parts) as fd:
            entries: list[Entry] = []
            with os.scandir(fd) as scan:
                for item in scan:
                    entry = _entry(item.name, item.stat(follow_symlinks=False))
                    if entry is not None:
                        entries.append(entry)
                    if len(entries) >= limit:
                        break
        return sorted(entries, key=lambda e: (not e.is_directory, e.name))

    async def stat(self, root: UserRoot, path: ShellPath) -> Entry | None:
        return await asyncio.to_thread(self._stat, root, path)

    def _stat(self, root: UserRoot, path: ShellPath) -> Entry | None:
        if path.is_root:
            return Entry(name="", is_directory=True, size=None, modified=_time(0), created=_time(0))
        try:
            with self._walk(root, path.parent.parts) as fd:
                return _entry(path.name, os.stat(path.name, dir_fd=fd, follow_symlinks=False))
        except (NotFound, FileNotFoundError):
            return None

    async def read(self, root: UserRoot, path: ShellPath) -> AsyncGenerator[bytes, None]:
        fd = await asyncio.to_thread(self._open_file, root, path)
        try:
            while chunk := await asyncio.to_thread(os.read, fd, CHUNK_BYTES):
                yield chunk
        finally:
            os.close(fd)

    def _open_file(self, root: UserRoot, path: ShellPath) -> int:
        if path.is_root:
            raise NotFound("File not found.")
        with self._walk(root, path.parent.parts) as dir_fd:
            try:
                fd = os.open(path.name, FILE_READ, dir_fd=dir_fd)
            except OSError as exc:
                raise NotFound("File not found.") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotFound("File not found.")
        os.set_blocking(fd, True)
        return fd

    async def write(self, root: UserRoot, path: ShellPath, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int:
        if path.is_root:
            raise Conflict("The root is a directory.")
        staging = self._base / root.account_segment / root.user_segment / STAGING
        await asyncio.to_thread(self._ensure, staging)
        temp = staging / f"upload-{random_hex(8)}"
        fd = await asyncio.to_thread(os.open, temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        size = 0
        try:
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"The file is larger than {max_bytes} bytes.")
                    await asyncio.to_thread(os.write, fd, chunk)
                if self._owner is not None:
                    os.fchown(fd, *self._owner)
            finally:
                os.close(fd)
            await asyncio.to_thread(self._place, root, path, temp)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return size

    def _place(self, root: UserRoot, path: ShellPath, temp: Path) -> None:
        with self._walk(root, path.parent.parts, create=True) as dir_fd:
            try:
                if stat.S_ISDIR(os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    raise Conflict("A directory has that name.")
            except FileNotFoundError:
                pass
            os.rename(temp, path.name, dst_dir_fd=dir_fd)  # replaces a symlink itself, never its target

    async def make_directory(self, root: UserRoot, path: ShellPath) -> None:
        await asyncio.to_thread(self._make_directory, root, path)

    def _make_directory(self, root: UserRoot, path: ShellPath) -> None:
        with self._walk(root, path.parts, create=True):
            pass

    async def delete_file(self, root: UserRoot, path: ShellPath) -> None:
        await asyncio.to_thread(self._delete_file, root, path)

    def _delete_file(self, root: UserRoot, path: ShellPath) -> None:
        if path.is_root:
            raise NotFound("File not found.")
        with self._walk(root, path.parent.parts) as dir_fd:
            try:
                if stat.S_ISDIR(os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    raise NotFound("File not found.")
                os.unlink(path.name, dir_fd=dir_fd)  # a symlink goes itself; what it points at stays
            except FileNotFoundError as exc:
                raise NotFound("File not found.") from exc

    async def delete_directory(self, root: UserRoot, path: ShellPath) -> None:
        await asyncio.to_thread(self._delete_directory, root, path)

    def _delete_directory(self, root: UserRoot, path: ShellPath) -> None:
        with self._walk(root, path.parent.parts) as dir_fd:
            try:
                info = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError as exc:
                raise NotFound("Directory not found.") from exc
            if not stat.S_ISDIR(info.st_mode):
                raise NotFound("Directory not found.")
            shutil.rmtree(path.name, dir_fd=dir_fd)

    async def usage(self, root: UserRoot | None, account_id: str, *, limit: int) -> int:
        base = self._base / UserRoot(account_id, "").account_segment
        return await asyncio.to_thread(self._usage, base / root.user_segment if root else base, limit)

    @staticmethod
    def _usage(top: Path, limit: int) -> int:
        """Sizes of regular files (symlinks not followed), staging and scratch included: they hold disk too."""
        total, seen, pending = 0, 0, [top]
        while pending:
            try:
                scan = os.scandir(pending.pop())
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    continue
                raise
            with scan:
                for item in scan:
                    seen += 1
                    if seen > limit:
                        return FULL
                    try:
                        info = item.stat(follow_symlinks=False)
                    except FileNotFoundError:  # gone since the listing (a finished upload's staging file)
                        continue
                    if stat.S_ISDIR(info.st_mode):
                        pending.append(Path(item.path))
                    elif stat.S_ISREG(info.st_mode):
                        total += info.st_size  # as S3 counts: bytes, not blocks (a sparse file counts whole)
        return total
