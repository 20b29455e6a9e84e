"""Shell files in an S3-compatible object store, through aiobotocore (async botocore, so no thread per call).

Keys are `{prefix}/{account}/{user}/{path}`; a directory is a key prefix, and mkdir leaves an empty
`{path}/` marker object so an empty directory exists. S3 has no directory times: a directory entry
carries its marker's time, or the listing's when it has none. Uploads stream: up to one 8 MB part is
held at a time (multipart upload above that), and a failed or oversized upload is aborted, leaving
nothing. The store is the operator's (like Redis), so it is reached directly, not through egress.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from botline.shell.local import FULL
from botline.shell.paths import InvalidPath, ShellPath
from botline.shell.settings import S3Settings
from botline.shell.storage import CHUNK_BYTES, Conflict, Entry, FileStore, NotFound, TooLarge, UserRoot

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

PART_BYTES = 8 * 1024 * 1024
"""S3's smallest multipart part is 5 MB; this many bytes of an upload are in memory at most."""
DELETE_BATCH = 1000
MISSING = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class RemoteFile:
    size: int
    etag: str


@dataclass
class RemoteTree:
    """A user's objects: files by path key (`a/b.txt`), and every directory (markers and prefixes)."""

    files: dict[str, RemoteFile] = field(default_factory=dict)
    directories: set[str] = field(default_factory=set)


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in MISSING


class S3FileStore(FileStore):
    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._stack: AsyncExitStack | None = None

    @classmethod
    async def open(cls, settings: S3Settings) -> S3FileStore:
        """A store with its own client (closed by `close`)."""
        stack = AsyncExitStack()
        credentials: dict[str, Any] = {}
        if settings.access_key_id and settings.secret_access_key:
            credentials = {"aws_access_key_id": settings.access_key_id.get_secret_value(),
                           "aws_secret_access_key": settings.secret_access_key.get_secret_value()}
        client = await stack.enter_async_context(get_session().create_client(
            "s3", region_name=settings.region, endpoint_url=settings.endpoint_url, **credentials))
        store = cls(client, settings.bucket, settings.prefix)
        store._stack = stack
        return store

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    def _base(self, root: UserRoot) -> str:
        return f"{self._prefix}/{root.account_segment}/{root.user_segment}/"

    def _key(self, root: UserRoot, path: ShellPath) -> str:
        return self._base(root) + path.key()

    def _dir_prefix(self, root: UserRoot, path: ShellPath) -> str:
        return self._base(root) + (path.key() + "/" if not path.is_root else "")

    async def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(await self._client.head_object(Bucket=self._bucket, Key=key))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    async def _has_prefix(self, prefix: str) -> bool:
        page = await self._client.list_objects_v2(Bucket=self._bucket, Prefix=prefix, MaxKeys=1)
        return bool(page.get("KeyCount"))

    async def listing(self, root: UserRoot, path: ShellPath, *, limit: int) -> list[Entry]:
        prefix = self._dir_prefix(root, path)
        now = datetime.now(UTC)
        directories: list[Entry] = []
        files: list[Entry] = []
        found = path.is_root
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                found = True
                name = common.get("Prefix", "")[len(prefix):].rstrip("/")
                directories.append(Entry(name=name, is_directory=True, size=None, modified=now, created=now))
            for item in page.get("Contents", []):
                found = True
                name = item.get("Key", "")[len(prefix):]
                if name:  # the directory's own marker has no name
                    modified = item.get("LastModified", now)
                    files.append(Entry(name=name, is_directory=False, size=item.get("Size", 0), modified=modified,
                                       created=modified))
            if len(directories) + len(files) >= limit:
                break
        if not found:
            raise NotFound("Directory not found.")
        directories = await self._with_marker_times(prefix, directories)
        return sorted([*directories, *files], key=lambda e: (not e.is_directory, e.name))[:limit]

    async def _with_marker_times(self, prefix: str, directories: list[Entry]) -> list[Entry]:
        timed = []
        for entry in directories:
            marker = await self._head(f"{prefix}{entry.name}/")
            if marker is not None:
                entry = Entry(name=entry.name, is_directory=True, size=None, modified=marker["LastModified"],
                              created=marker["LastModified"])
            timed.append(entry)
        return timed

    async def stat(self, root: UserRoot, path: ShellPath) -> Entry | None:
        now = datetime.now(UTC)
        if path.is_root:
            return Entry(name="", is_directory=True, size=None, modified=now, created=now)
        head = await self._head(self._key(root, path))
        if head is not None:
            return Entry(name=path.name, is_directory=False, size=int(head["ContentLength"]),
                         modified=head["LastModified"], created=head["LastModified"])
        if await self._has_prefix(self._dir_prefix(root, path)):
            return Entry(name=path.name, is_directory=True, size=None, modified=now, created=now)
        return None

    async def read(self, root: UserRoot, path: ShellPath) -> AsyncGenerator[bytes, None]:
        if path.is_root:
            raise NotFound("File not found.")
        try:
            response = await self._client.get_object(Bucket=self._bucket, Key=self._key(root, path))
        except ClientError as exc:
            if _missing(exc):
                raise NotFound("File not found.") from exc
            raise
        async with response["Body"] as body:
            while chunk := await body.read(CHUNK_BYTES):
                yield chunk

    async def _check_parents(self, root: UserRoot, path: ShellPath) -> None:
        """No file may stand where the path needs a directory (S3 would happily hold both)."""
        for depth in range(1, len(path.parts)):
            if await self._head(self._key(root, ShellPath(path.parts[:depth]))) is not None:
                raise Conflict("A file is in the way of that path.")

    async def write(self, root: UserRoot, path: ShellPath, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int:
        if path.is_root or await self._has_prefix(self._dir_prefix(root, path)):
            raise Conflict("A directory has that name.")
        await self._check_parents(root, path)
        key = self._key(root, path)
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"The file is larger than {max_bytes} bytes.")
                buffer += chunk
                if len(buffer) >= PART_BYTES:
                    if upload_id is None:
                        created = await self._client.create_multipart_upload(Bucket=self._bucket, Key=key)
                        upload_id = created["UploadId"]
                    part = await self._client.upload_part(Bucket=self._bucket, Key=key, UploadId=upload_id,
                                                          PartNumber=len(parts) + 1, Body=bytes(buffer))
                    parts.append({"ETag": part["ETag"], "PartNumber": len(parts) + 1})
                    buffer.clear()
            if upload_id is None:
                await self._client.put_object(Bucket=self._bucket, Key=key, Body=bytes(buffer))
                return size
            if buffer:
                part = await self._client.upload_part(Bucket=self._bucket, Key=key, UploadId=upload_id,
                                                      PartNumber=len(parts) + 1, Body=bytes(buffer))
                parts.append({"ETag": part["ETag"], "PartNumber": len(parts) + 1})
            await self._client.complete_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id,
                                                         MultipartUpload={"Parts": parts})  # type: ignore[typeddict-item]
            return size
        except BaseException:
            if upload_id is not None:
                await self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
            raise

    async def make_directory(self, root: UserRoot, path: ShellPath) -> None:
        if path.is_root:
            return
        if await self._head(self._key(root, path)) is not None:
            raise Conflict("A file is in the way of that path.")
        await self._check_parents(root, path)
        await self._client.put_object(Bucket=self._bucket, Key=self._dir_prefix(root, path), Body=b"")

    async def delete_file(self, root: UserRoot, path: ShellPath) -> None:
        key = self._key(root, path)
        if path.is_root or await self._head(key) is None:
            raise NotFound("File not found.")
        await self._client.delete_object(Bucket=self._bucket, Key=key)

    async def delete_directory(self, root: UserRoot, path: ShellPath) -> None:
        keys = [key async for key, _ in self._objects(self._dir_prefix(root, path))]
        if not keys:
            raise NotFound("Directory not found.")
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start:start + DELETE_BATCH]]
            await self._client.delete_objects(Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True})  # type: ignore[typeddict-item]

    async def _objects(self, prefix: str) -> AsyncIterator[tuple[str, int]]:
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item.get("Key", ""), item.get("Size", 0)

    async def tree(self, root: UserRoot, *, limit: int) -> RemoteTree:
        """Every file (with its size and ETag) and directory of the user, in one listing (no HEAD per
        directory); TooLarge past `limit` objects."""
        base = self._base(root)
        tree = RemoteTree()
        async for key, size, etag in self._objects_with_tags(base):
            if len(tree.files) + len(tree.directories) >= limit:
                raise TooLarge(f"The user has more than {limit} files and directories.")
            relative = key[len(base):]
            try:
                path = ShellPath.parse(relative)
            except InvalidPath:
                continue
            if path.is_root:
                continue
            if relative.endswith("/"):
                tree.directories.add(path.key())
            else:
                tree.files[path.key()] = RemoteFile(size, etag)
            tree.directories.update(ShellPath(path.parts[:depth]).key() for depth in range(1, len(path.parts)))
        return tree

    async def _objects_with_tags(self, prefix: str) -> AsyncIterator[tuple[str, int, str]]:
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item.get("Key", ""), item.get("Size", 0), item.get("ETag", "")

    async def usage(self, root: UserRoot | None, account_id: str, *, limit: int) -> int:
        prefix = self._base(root) if root else f"{self._prefix}/{UserRoot(account_id, '').account_segment}/"
        total = seen = 0
        async for _, size in self._objects(prefix):
            seen += 1
            if seen > limit:
                return FULL
            total += size
        return total
