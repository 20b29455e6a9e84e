"""What the Shell I/O API and the bash tool share: a FileStore plus quotas, file details and public links."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta

from botline.shell.links import PUBLIC_PREFIX, LinkClaims, LinkSigner, new_secret
from botline.shell.paths import ShellPath
from botline.shell.quota import Quotas
from botline.shell.settings import ShellSettings
from botline.shell.storage import Entry, FileStore, NotFound, QuotaExceeded, TooLarge, UserRoot
from botline.store.base import ServerValueRepository

SNIFF_BYTES = 8192


@dataclass(frozen=True)
class FileDetails:
    entry: Entry
    mime_type: str
    is_plain_text: bool

    def wire(self) -> dict[str, object]:
        wire = self.entry.wire()
        return {"name": wire["name"], "size": wire["size"], "createdAtUtc": wire["createdAtUtc"],
                "lastModifiedUtc": wire["lastModifiedUtc"], "mimeType": self.mime_type,
                "isPlainText": self.is_plain_text}


def looks_like_text(head: bytes) -> bool:
    """UTF-8 without NUL bytes (a multi-byte character cut at the end of the sample still counts)."""
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True


class ShellFiles:
    """`link_key` signs public addresses: `shell.link_secret`, or the key generated once and kept in the
    Store (app.py), so addresses work on every replica and after a restart."""

    def __init__(self, store: FileStore, settings: ShellSettings, quotas: Quotas, link_key: bytes) -> None:
        self.store = store
        self.quotas = quotas
        self.settings = settings
        self._signer = LinkSigner(link_key)

    async def remaining(self, root: UserRoot) -> int:
        return await self.quotas.remaining(root)

    async def upload(self, root: UserRoot, path: ShellPath, chunks: AsyncIterator[bytes],
                     declared_size: int | None, *, envelope: int = 0) -> int:
        """TooLarge past the file cap, QuotaExceeded past a quota: before reading when the size is declared.
        The file may be up to `envelope` bytes larger than `declared_size` (a multipart body's size less
        its envelope): that much more is reserved."""
        s = self.settings
        if declared_size is not None and declared_size > s.max_file_bytes:
            raise TooLarge(f"The file is larger than the {s.max_file_bytes}-byte limit.")
        at_most = None if declared_size is None else declared_size + envelope
        async with self.quotas.reserve(root, declared_size or 0, at_most) as room:
            try:
                return await self.store.write(root, path, chunks, max_bytes=room)
            except TooLarge:
                if room < s.max_file_bytes and (at_most is None or room < at_most):
                    raise QuotaExceeded(self.quotas.message(room)) from None
                raise TooLarge(f"The file is larger than the {s.max_file_bytes}-byte limit.") from None

    async def details(self, root: UserRoot, path: ShellPath) -> FileDetails:
        entry = await self.store.stat(root, path)
        if entry is None or entry.is_directory:
            raise NotFound("File not found.")
        head = b""
        async with aclosing(self.store.read(root, path)) as chunks:
            async for chunk in chunks:
                head += chunk
                if len(head) >= SNIFF_BYTES:
                    break
        guessed = mimetypes.guess_type(path.name)[0]
        plain = looks_like_text(head[:SNIFF_BYTES])
        return FileDetails(entry, guessed or ("text/plain" if plain else "application/octet-stream"), plain)

    def public_token(self, root: UserRoot, path: ShellPath, now: datetime) -> str:
        expires = int((now + timedelta(seconds=self.settings.link_seconds)).timestamp())
        return self._signer.sign(LinkClaims(root.account_id, root.shell_user_id, path.key(), expires))

    def public_url(self, base_url: str, root: UserRoot, path: ShellPath, now: datetime) -> str:
        """The file's public address: it downloads without a key until `shell.link_seconds` from `now`."""
        return f"{base_url}{PUBLIC_PREFIX}{self.public_token(root, path, now)}"

    def open_token(self, token: str, now: datetime) -> tuple[UserRoot, ShellPath] | None:
        claims = self._signer.verify(token, now)
        if claims is None:
            return None
        return UserRoot(claims.account_id, claims.shell_user_id), ShellPath.parse(claims.path)

    async def close(self) -> None:
        await self.store.close()


LINK_SECRET_NAME = "shell.link_secret"


async def link_key(values: ServerValueRepository, settings: ShellSettings) -> bytes:
    """`shell.link_secret` when set; else the key the first replica to start generated and kept in the
    Store, so every replica (and this one after a restart) signs and checks addresses alike."""
    if settings.link_secret is not None:
        return settings.link_secret.get_secret_value().encode()
    return (await values.keep(LINK_SECRET_NAME, new_secret())).encode()
