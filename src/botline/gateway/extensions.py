"""Extensions add instructions and tools to every turn (memories, scheduled continuations...).

The pipeline asks each extension once per turn, so every channel (web chat, Telegram, WhatsApp,
/v1, scheduled activations) gets the same memory and scheduling abilities without knowing of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from botline.domain.gateways import Gateway
from botline.gateway.caller import Caller
from botline.gateway.tools import Tool


@dataclass(frozen=True)
class Contribution:
    instructions: list[str] = field(default_factory=list)
    """System blocks, appended after the session's own context."""
    tools: list[Tool] = field(default_factory=list)
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Called when the turn ends, however it ends (a tool's per-turn scratch space)."""


class TurnExtension(Protocol):
    async def contribute(self, gateway: Gateway, caller: Caller) -> Contribution: ...
