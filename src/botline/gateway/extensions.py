"""Extensions add instructions and tools to every turn (memories, scheduled continuations, skills...).

The pipeline asks each extension once per turn, so every channel (web chat, Telegram, WhatsApp,
/v1, scheduled activations) gets the same memory and scheduling abilities without knowing of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from botline.domain.gateways import Gateway
from botline.gateway.caller import Caller
from botline.gateway.context import ChatMessage
from botline.gateway.tools import Tool


class RoundShaper(Protocol):
    """Shapes every model round of one turn, for state a tool changes mid-turn (a skill read with
    `read_skill` is in the system instructions of the very next round, and shows the tools it allows)."""

    def begin(self, conversation: Sequence[ChatMessage]) -> None:
        """Sees the conversation once, before the first round (state carried over from earlier turns)."""

    async def system_blocks(self) -> list[str]:
        """System blocks for the coming round, appended after every other one."""

    def offers(self, tool_name: str) -> bool:
        """Whether the coming round offers (and may run) this server-side tool."""

    def forget(self) -> None:
        """Drops the state it carries, keeping its rules (a worker's `clear skills`)."""


@dataclass(frozen=True)
class Contribution:
    instructions: list[str] = field(default_factory=list)
    """System blocks, appended after the session's own context."""
    tools: list[Tool] = field(default_factory=list)
    shapers: list[RoundShaper] = field(default_factory=list)
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Called when the turn ends, however it ends (a tool's per-turn scratch space)."""
    group: str = ""
    """What kind of thing this is, for a worker that clears one kind (`draft.SKILLS`)."""


class TurnExtension(Protocol):
    async def contribute(self, gateway: Gateway, caller: Caller) -> Contribution: ...


@dataclass(frozen=True)
class UsedDocument:
    """A knowledge document a turn put before the model (shown by the web chat, returned by /v1)."""

    id: str
    name: str
    collection_id: str
    score: float
    collection_name: str = ""


@dataclass(frozen=True)
class Preparation:
    """What a stage changes in a turn before the model call."""

    instructions: list[str] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    messages: list[ChatMessage] | None = None
    """The conversation to send instead (None: unchanged); what is stored in the session is not affected."""
    documents: list[UsedDocument] = field(default_factory=list)


class TurnStage(Protocol):
    """Like a TurnExtension, for work that reads (and may rewrite) the conversation: retrieval."""

    async def prepare(self, gateway: Gateway, caller: Caller, messages: Sequence[ChatMessage]) -> Preparation: ...

    def handles(self, callback_url: str) -> bool:
        """True for a protocol function whose callbackUrl this stage serves itself (aivax://...), which the
        pipeline then does not call over HTTP."""
        ...
