"""What the Shell I/O API and the bash tool share: a FileStore plus quotas, file details and public links."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta

from botline.shell.links import LinkClaims, LinkSigner
from botline.shell.paths import ShellPath
from botline.shell.settings import ShellSettings
from botline.shell.storage import Entry, FileStore, NotFound, QuotaExceeded, TooLarge, UserRoot

SNIFF_BYTES = 8192
ACCOUNT_WALK_FACTOR = 100
"""An account's quota walk reads up to this many times `max_entries`."""


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
    def __init__(self, store: FileStore, settings: ShellSettings) -> None:
        self.store = store
        self._settings = settings
        secret = settings.link_secret.get_secret_value().encode() if settings.link_secret else None
        self._signer = LinkSigner(secret)

    async def remaining(self, root: UserRoot) -> int:
        """Bytes one more file may take: the smallest of the file cap and what both quotas leave."""
        s = self._settings
        user = await self.store.usage(root, root.account_id, limit=s.max_entries)
        account = await self.store.usage(None, root.account_id, limit=s.max_entries * ACCOUNT_WALK_FACTOR)
        return min(s.max_file_bytes, s.user_quota_bytes - user, s.account_quota_bytes - account)

    async def upload(self, root: UserRoot, path: ShellPath, chunks: AsyncIterator[bytes],
                     declared_size: int | None) -> int:
        """TooLarge past the file cap, QuotaExceeded past a quota: before reading when the size is declared."""
        s = self._settings
        if declared_size is not None and declared_size > s.max_file_bytes:
            raise TooLarge(f"The file is larger than the {s.max_file_bytes}-byte limit.")
        room = await self.remaining(root)
        if room < s.max_file_bytes and (room <= 0 or (declared_size or 0) > room):
            raise QuotaExceeded(self._quota_message(room))
        try:
            return await self.store.write(root, path, chunks, max_bytes=max(room, 0))
        except TooLarge:
            if room < s.max_file_bytes:
                raise QuotaExceeded(self._quota_message(room)) from None
            raise TooLarge(f"The file is larger than the {s.max_file_bytes}-byte limit.") from None

    def _quota_message(self, room: int) -> str:
        return (f"Not enough storage left for this shell user ({max(room, 0)} bytes free; the quotas are "
                f"{self._settings.user_quota_bytes} bytes per user and {self._settings.account_quota_bytes} "
                f"per account). Delete files first.")

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
        expires = int((now + timedelta(seconds=self._settings.link_seconds)).timestamp())
        return self._signer.sign(LinkClaims(root.account_id, root.shell_user_id, path.key(), expires))

    def open_token(self, token: str, now: datetime) -> tuple[UserRoot, ShellPath] | None:
        claims = self._signer.verify(token, now)
        if claims is None:
            return None
        return UserRoot(claims.account_id, claims.shell_user_id), ShellPath.parse(claims.path)

    async def close(self) -> None:
        await self.store.close()
