"""The JSON a worker answers with (`Content-Type: application/json+worker-action`), as AIVAX defines it
(docs/tools.md has every shape). Parsed whole or not at all: one invalid rewrite rejects the answer,
so a turn is never half-rewritten."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from botline.domain.base import CamelModel
from botline.domain.gateways import ProtocolFunction, RemoteResource
from botline.domain.limits import Document, Items, JsonObject
from botline.gateway.tools import Tool, ToolFailure, ToolSpec

WORKER_ACTION = "application/json+worker-action"
ClearTarget = Literal["messages", "meta", "system", "tools", "skills", "all"]
MESSAGE_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Clear(CamelModel):
    type: Literal["clear"]
    argument: ClearTarget | None = None
    """None: the messages (AIVAX's "replace the user context" example)."""


class AddMessage(CamelModel):
    type: Literal["add-message"]
    message: JsonObject

    @field_validator("message")
    @classmethod
    def _openai_message(cls, value: dict[str, Any]) -> dict[str, Any]:
        return openai_message(value)


class RemoveMessage(CamelModel):
    type: Literal["remove-message"]
    index: int = Field(ge=0)


class AddSystem(CamelModel):
    type: Literal["add-system"]
    message: Document


class AddTool(CamelModel):
    type: Literal["add-tool"]
    tool: JsonObject

    @field_validator("tool")
    @classmethod
    def _function_tool(cls, value: dict[str, Any]) -> dict[str, Any]:
        function = value.get("function")
        if value.get("type") != "function" or not isinstance(function, dict):
            raise ValueError('must be {"type": "function", "function": {...}}')
        if not isinstance(function.get("name"), str) or not TOOL_NAME.match(function["name"]):
            raise ValueError("function.name must be 1 to 64 letters, digits, '_' or '-'")
        if not isinstance(function.get("parameters", {}), dict):
            raise ValueError("function.parameters must be a JSON Schema object")
        return value


class AddProtocolTool(CamelModel):
    type: Literal["add-protocol-tool"]
    tool: ProtocolFunction


class AddMcpSource(CamelModel):
    type: Literal["add-mcp-source"]
    source: RemoteResource


Rewrite = Annotated[Clear | AddMessage | RemoveMessage | AddSystem | AddTool | AddProtocolTool | AddMcpSource,
                    Field(discriminator="type")]


class ReceivedData(CamelModel):
    rewrites: Items[Rewrite] = Field(default_factory=list)


class ReceivedResponse(CamelModel):
    type: Literal["message.received.response"]
    data: ReceivedData


class ToolCalledData(CamelModel):
    result: Document
    messages: Items[JsonObject] = Field(default_factory=list)

    @field_validator("messages")
    @classmethod
    def _openai_messages(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [openai_message(message) for message in value]


class ToolCalledResponse(CamelModel):
    type: Literal["tool.called.response"]
    data: ToolCalledData


def openai_message(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("role") not in MESSAGE_ROLES:
        raise ValueError(f"role must be one of {', '.join(sorted(MESSAGE_ROLES))}")
    if not isinstance(value.get("content"), str | list):
        raise ValueError("content must be a string or a list of parts")
    return value


class WorkerTool(Tool):
    """A tool a worker added with `add-tool`: offered to the model, answered by the worker's `tool.called`
    response (there is nothing else to run it)."""

    def __init__(self, spec: ToolSpec) -> None:
        self.name = spec["function"]["name"]
        self._spec = spec

    def spec(self) -> ToolSpec:
        return self._spec

    async def run(self, arguments: dict[str, Any], caller: Any) -> str:
        raise ToolFailure(f"The tool {self.name} gave no result. Tell the user it is unavailable right now.")
