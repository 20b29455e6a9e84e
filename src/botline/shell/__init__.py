"""Per-user sandbox files (disk or S3-compatible) and the model's sandboxed bash tool (docs/shell.md)."""

from botline.shell.paths import InvalidPath, ShellPath
from botline.shell.storage import Entry, FileStore, NotFound, ShellError, UserRoot

__all__ = ["Entry", "FileStore", "InvalidPath", "NotFound", "ShellError", "ShellPath", "UserRoot"]
