"""A turn as it stands just before the first model call, and the hook that may rewrite it (a worker).

The pipeline builds a `TurnDraft` from the gateway, the extensions and the stages, hands it to the
`TurnHook` (`message.received`), and sends what is left. Each part remembers where it came from
(`group`), so a hook can clear one kind (the skills) without knowing how it was made.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from botline.domain.gateways import Gateway
from botline.gateway.caller import Caller
from botline.gateway.context import ChatMessage
from botline.gateway.extensions import RoundShaper
from botline.gateway.tools import Tool

SKILLS = "skills"
"""The group of what the skills extension adds (its list, `read_skill`, the active skills)."""


@dataclass
class TurnDraft:
    system: list[tuple[str, str]]
    """(group, block) in order; joined with blank lines into the first message."""
    system_role: str
    """"system", or "user" for gateways with NoSystemInstruct."""
    conversation: list[ChatMessage]
    tools: list[tuple[str, Tool]]
    client_tools: list[dict[str, Any]] | None
    """A /v1 caller's own tools (None: the caller sent none)."""
    shapers: list[tuple[str, RoundShaper]]
    caller: Caller

    def system_text(self) -> str:
        return "\n\n".join(block for _, block in self.system)

    def messages(self) -> list[ChatMessage]:
        """What the model would receive: the system message (when there is one), then the conversation."""
        system: list[ChatMessage] = [{"role": self.system_role, "content": self.system_text()}] if self.system else []
        return [*system, *self.conversation]

    def remove_message(self, index: int) -> bool:
        """Removes message `index` of `messages()` (0 is the system message when there is one)."""
        if self.system:
            if index == 0:
                self.system.clear()
                return True
            index -= 1
        if not 0 <= index < len(self.conversation):
            return False
        del self.conversation[index]
        return True

    def clear_messages(self) -> None:
        self.conversation = []

    def clear_system(self) -> None:
        self.system = []

    def clear_tools(self) -> None:
        """Every tool but `read_skill` (cleared with the skills), the /v1 caller's own included."""
        self.tools = [(group, tool) for group, tool in self.tools if group == SKILLS]
        self.client_tools = [] if self.client_tools is not None else None

    def clear_skills(self) -> None:
        """No skill list, no `read_skill`, no active skill; hidden tools stay hidden."""
        self.system = [(group, block) for group, block in self.system if group != SKILLS]
        self.tools = [(group, tool) for group, tool in self.tools if group != SKILLS]
        for group, shaper in self.shapers:
            if group == SKILLS:
                shaper.forget()

    def clear_meta(self) -> None:
        """The session metadata tools, callbacks and MCP servers receive."""
        self.caller = replace(self.caller, metadata={})


@dataclass(frozen=True)
class ToolVerdict:
    """A hook's answer for one tool call: `result` replaces the run (and `messages` follow the round's
    tool results), or the call is refused (`result` is then what the model is told)."""

    result: str
    messages: list[ChatMessage] = field(default_factory=list)
    refused: bool = False


class TurnHook(Protocol):
    async def received(self, gateway: Gateway, draft: TurnDraft) -> None:
        """May rewrite the draft in place; raises GatewayError to stop the turn."""

    async def tool_called(self, gateway: Gateway, caller: Caller, name: str, arguments: str) -> ToolVerdict | None:
        """None: run the tool as usual."""
