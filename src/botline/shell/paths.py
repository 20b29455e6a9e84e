"""A shell path as the client writes it, turned into safe name components under the user's root.

The user's root is "/": `a/b.txt`, `/a/b.txt` and `./a//b.txt` are the same file. Anything that could
name a place outside it, or that the filesystem or an object store cannot hold, is refused here (400),
before any storage sees it: `..`, NUL and other control characters, backslashes, names over 255 bytes,
more than MAX_DEPTH levels, text that is not valid Unicode. Symlinks are the storage's concern (local.py
never follows one).
"""

from __future__ import annotations

from dataclasses import dataclass

PATH_MAX = 1024
"""Characters of a whole path."""
NAME_BYTES_MAX = 255
"""Bytes of one name in UTF-8: what ext4, XFS and most filesystems hold."""
MAX_DEPTH = 32


class InvalidPath(ValueError):
    """The path names nothing the user may reach; the message says why."""


def _check_name(name: str) -> str:
    if name == "..":
        raise InvalidPath("'..' is not allowed in a path")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise InvalidPath("control characters (NUL included) are not allowed in a path")
    if "\\" in name:
        raise InvalidPath("backslashes are not allowed in a path")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPath("the path is not valid Unicode") from exc
    if len(encoded) > NAME_BYTES_MAX:
        raise InvalidPath(f"a name may have at most {NAME_BYTES_MAX} bytes")
    return name


@dataclass(frozen=True)
class ShellPath:
    """The path's names, root first; `()` is the root itself."""

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, raw: str) -> ShellPath:
        if len(raw) > PATH_MAX:
            raise InvalidPath(f"a path may have at most {PATH_MAX} characters")
        parts = tuple(_check_name(part) for part in raw.split("/") if part not in ("", "."))
        if len(parts) > MAX_DEPTH:
            raise InvalidPath(f"a path may be at most {MAX_DEPTH} levels deep")
        return cls(parts)

    @property
    def is_root(self) -> bool:
        return not self.parts

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else ""

    @property
    def parent(self) -> ShellPath:
        return ShellPath(self.parts[:-1])

    def key(self) -> str:
        """The path relative to the root, '/'-joined (no leading slash; '' for the root)."""
        return "/".join(self.parts)

    def __str__(self) -> str:
        return "/" + self.key()
