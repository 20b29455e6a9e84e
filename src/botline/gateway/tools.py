"""Tools the model may call during a turn: protocol functions (HTTP callbacks) and built-ins.

A tool's failure never breaks the turn: the model receives a short error text instead.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from botline.domain import json_schema
from botline.domain.gateways import ProtocolFunction
from botline.egress import Egress, EgressError, EgressResponse, Trust
from botline.gateway.caller import Caller, CallSource
from botline.gateway.context import ChatMessage
from botline.media import OutboundMedia, media_from_response
from botline.media.outbound import Attachments, attachments_from_json, media_type

log = logging.getLogger(__name__)

ToolSpec = dict[str, Any]

MEDIA_AUDIENCES = frozenset({CallSource.WEB_CHAT, CallSource.TELEGRAM, CallSource.ZAPI, CallSource.EVOLUTION,
                             CallSource.KAPSO})
"""Where a tool's file reaches a person (the web chat's `done`, the channels' sends)."""


class ToolFailure(Exception):
    """The tool could not do its work; `message` is what the model is told."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EndTurn(Exception):
    """Raised by a tool whose work ends the turn (a handoff to a person): the model gets `result` and is
    not asked again; the turn's answer is `answer`, exactly (the user sees it once, word for word)."""

    def __init__(self, result: str, answer: str) -> None:
        super().__init__(result)
        self.result = result
        self.answer = answer


class Tool(ABC):
    """Something the model can call. The model sees `spec()`, never how it runs."""

    name: str

    @abstractmethod
    def spec(self) -> ToolSpec:
        """The OpenAI `tools[]` entry."""

    @abstractmethod
    async def run(self, arguments: dict[str, Any], caller: Caller) -> str | ToolReply:
        """Does the work; returns text for the model (and maybe a file for the user) or raises ToolFailure."""


@dataclass(frozen=True)
class ToolReply:
    """A tool's answer that also carries files for the user (sent with the turn's answer) or images for
    the model (shown to it in the next round, after the round's tool results)."""

    text: str
    media: list[OutboundMedia] = field(default_factory=list)
    images: list[OutboundMedia] = field(default_factory=list)
    """Inline images (`OutboundMedia.is_image`) the model sees; the tool decided it may (the gateway's
    multimodal settings) and said so in `text`."""


@dataclass(frozen=True)
class ResponseCaps:
    """How much of a callback's answer is read: `text` for the model, `media` for a file."""

    text: int
    media: int


def function_spec(name: str, description: str, parameters: dict[str, Any]) -> ToolSpec:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


class ProtocolFunctionTool(Tool):
    """POSTs validated arguments to the function's callbackUrl; any 2xx body goes to the model."""

    def __init__(self, function: ProtocolFunction, egress: Egress, *, trust: Trust, timeout: float,
                 caps: ResponseCaps) -> None:
        self.name = function.name
        self._function = function
        self._egress = egress
        self._trust = trust
        self._timeout = timeout
        self._caps = caps
        self._validator = json_schema.validator_for(function.content_format)

    def spec(self) -> ToolSpec:
        return function_spec(self.name, self._function.description, self._function.content_format)

    async def run(self, arguments: dict[str, Any], caller: Caller) -> str | ToolReply:
        errors = sorted(self._validator.iter_errors(arguments), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "arguments"
            raise ToolFailure(f"Invalid arguments for {self.name} at {where}: {errors[0].message}")
        body = {
            "type": "tool_call",
            "function": {"name": self.name, "content": arguments},
            "context": {
                "externalUserId": caller.external_user_id,
                "metadata": caller.metadata,
                "callSource": caller.call_source.value,
                "conversationToken": caller.conversation_token,
                "moment": datetime.now(UTC).isoformat(),
            },
        }
        try:
            response = await self._egress.request(
                "POST", self._function.callback_url, trust=self._trust, json=body, headers=self._function.headers,
                timeout=self._timeout, max_bytes=max(self._caps.text, self._caps.media),
            )
            if response.ok:
                return self._answer(response, caller)
            log.warning("protocol function %s answered HTTP %s", self.name, response.status)
        except EgressError as exc:
            log.warning("protocol function %s failed: %s", self.name, exc.message)
        raise ToolFailure(f"The tool {self.name} failed to run. Tell the user it is unavailable right now.")

    def _answer(self, response: EgressResponse, caller: Caller) -> str | ToolReply:
        """Text for the model, or a file for the user (the model is told it was sent, by name). Where
        nothing is shown to a person (/v1, scheduled and batch runs) the model is told so instead."""
        media = media_from_response(response.headers, response.body, name=self.name)
        if media is None:
            try:
                attached = attachments_from_json(media_type(response.headers.get("Content-Type", "")),
                                                 response.body, name=self.name)
            except ValueError as exc:
                log.warning("protocol function %s answered bad attachments: %s", self.name, exc)
                raise ToolFailure(
                    f"The tool {self.name} answered a file that could not be read. Tell the user.") from None
            if attached is not None:
                return self._attachments(attached, caller)
            if len(response.body) > self._caps.text:
                log.warning("protocol function %s answered %d bytes of text", self.name, len(response.body))
                raise ToolFailure(f"The tool {self.name} answered too much text. Tell the user it failed.")
            return response.text()
        if len(media.data) > self._caps.media:
            log.warning("protocol function %s answered a %d-byte file", self.name, len(media.data))
            raise ToolFailure(f"The tool {self.name} produced a file too large to send. Tell the user.")
        return self._attachments(Attachments(text="", media=[media]), caller)

    def _attachments(self, attached: Attachments, caller: Caller) -> str | ToolReply:
        """The files go to the person (the model is told which); the callback's text goes to the model."""
        names = ", ".join(f"{m.filename} ({m.content_type})" for m in attached.media)
        head = f"{attached.text}\n\n" if attached.text else ""
        if not attached.media:
            return attached.text
        if caller.call_source not in MEDIA_AUDIENCES:
            return f"{head}The tool made {names}, but files cannot be shown in this conversation."
        return ToolReply(f"{head}Sent to the user with your answer: {names}; do not repeat or link them.",
                         list(attached.media))


def images_message(images: list[tuple[str, OutboundMedia]]) -> ChatMessage:
    """The `user` message that shows the model the images tools returned in one round: OpenAI's chat
    format allows only text in a `tool` message, so the images follow the round's tool results, each
    after a line naming the tool and the file (the tool's text refers to it by that name)."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": "[Images the tools returned, for you to see:]"}]
    for tool, image in images:
        parts.append({"type": "text", "text": f"{image.filename} from {tool}:"})
        parts.append({"type": "image_url", "image_url": {"url": image.data_url()}})
    return {"role": "user", "content": parts}


def no_tool(name: str) -> str:
    """What the model is told when it calls a tool it was not offered."""
    return f"There is no tool named {name}."


class ToolSet:
    """The tools offered in one turn, by name (first definition of a name wins)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self.media: list[OutboundMedia] = []
        """Files the tools produced this turn, in the order they were made."""
        self._images: list[tuple[str, OutboundMedia]] = []
        for tool in tools:
            self._tools.setdefault(tool.name, tool)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __bool__(self) -> bool:
        return bool(self._tools)

    def specs(self, offered: Callable[[str], bool] = lambda name: True) -> list[ToolSpec]:
        """The `tools[]` entries of the tools `offered` lets through."""
        return [tool.spec() for name, tool in self._tools.items() if offered(name)]

    async def call(self, name: str, raw_arguments: str, caller: Caller) -> str:
        """Runs one tool call; returns the text the model receives (or raises the tool's EndTurn)."""
        tool = self._tools.get(name)
        if tool is None:
            return no_tool(name)
        try:
            arguments = orjson.loads(raw_arguments or "{}")
        except orjson.JSONDecodeError:
            return f"The arguments for {name} are not valid JSON."
        if not isinstance(arguments, dict):
            return f"The arguments for {name} must be a JSON object."
        try:
            answer = await tool.run(arguments, caller)
        except ToolFailure as exc:
            return exc.message
        except EndTurn:
            raise
        except Exception:  # a broken tool must not break the turn: the model is told, the bug is logged
            log.exception("tool %s failed unexpectedly", name)
            return f"The tool {name} failed to run. Tell the user it is unavailable right now."
        if isinstance(answer, ToolReply):
            self.media.extend(answer.media)
            self._images += [(name, image) for image in answer.images]
            return answer.text
        return answer

    def take_images(self) -> list[tuple[str, OutboundMedia]]:
        """(tool name, image) for the model, returned since the last call."""
        images, self._images = self._images, []
        return images
