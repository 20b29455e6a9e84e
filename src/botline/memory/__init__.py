"""Per-user memory: the service, the model's tools and the turn extension that offers them."""

from __future__ import annotations

from botline.memory.extension import MemoryExtension
from botline.memory.service import MemoryService

__all__ = ["MemoryExtension", "MemoryService"]
