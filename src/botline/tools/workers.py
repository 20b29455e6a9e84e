"""Workers: the gateway's `workerScriptSource` URL sees every turn before the model call
(`message.received`) and every server-side tool call before it runs (`tool.called`), and may rewrite or
stop them.

POSTed through the egress layer with the gateway owner's trust, the account's `X-Request-Nonce`, a
time limit and a response size limit. Only `Content-Type: application/json+worker-action` answers
change anything; a 4xx is the worker saying no (the event stops); a 5xx, a timeout, a refused
destination or an oversized answer is a failure, which changes nothing unless the gateway has the
`WorkerFailClosed` flag (then it stops the event as a refusal does). docs/tools.md.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from botline.config import ToolsSettings
from botline.domain.clock import Clock
from botline.domain.gateways import Gateway, GatewayFlag
from botline.egress import Egress, EgressError, Trust
from botline.gateway.caller import Caller
from botline.gateway.draft import ToolVerdict, TurnDraft
from botline.gateway.errors import GatewayError
from botline.gateway.tools import ProtocolFunctionTool, ResponseCaps
from botline.logs import loggable_url
from botline.tools.mcp_tools import McpExtension
from botline.tools.nonce import RequestNonces
from botline.tools.worker_actions import (
    WORKER_ACTION,
    AddMcpSource,
    AddMessage,
    AddProtocolTool,
    AddSystem,
    AddTool,
    Clear,
    ReceivedResponse,
    RemoveMessage,
    ToolCalledResponse,
    WorkerTool,
)

log = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
WORKER_GROUP = "worker"
STOPPED = "This message was stopped by the assistant's policy."


class WorkerStopped(GatewayError):
    """The worker refused `message.received` (or failed, with WorkerFailClosed): no model call."""

    status_code = 403


class _Failed(Exception):
    """The worker could not be asked (timeout, 5xx, refused destination, answer too large)."""


class _Refused(Exception):
    """The worker answered 4xx."""


class WorkerHook:
    def __init__(self, egress: Egress, nonces: RequestNonces, mcp: McpExtension, settings: ToolsSettings, *,
                 trust_of: Callable[[str], Awaitable[Trust]], clock: Clock, tool_timeout: float,
                 tool_caps: ResponseCaps) -> None:
        self._egress = egress
        self._nonces = nonces
        self._mcp = mcp
        self._settings = settings
        self._trust_of = trust_of
        self._clock = clock
        self._tool_timeout = tool_timeout
        self._tool_caps = tool_caps

    async def received(self, gateway: Gateway, draft: TurnDraft) -> None:
        url = gateway.parameters.worker_script_source
        if url is None:
            return
        caller = draft.caller
        data = {"messages": draft.messages(), **_who(caller)}
        try:
            answer = await self._ask(gateway, url, "message.received", data, ReceivedResponse)
        except _Refused:
            raise WorkerStopped(STOPPED) from None
        except _Failed as exc:
            if gateway.parameters.has_flag(GatewayFlag.WORKER_FAIL_CLOSED):
                raise WorkerStopped(STOPPED) from exc
            return
        if answer is not None:
            await self._rewrite(gateway, draft, answer)

    async def tool_called(self, gateway: Gateway, caller: Caller, name: str, arguments: str) -> ToolVerdict | None:
        url = gateway.parameters.worker_script_source
        if url is None:
            return None
        try:
            parsed: Any = orjson.loads(arguments or "{}")
        except orjson.JSONDecodeError:
            parsed = arguments
        data = {"toolName": name, "toolArguments": parsed, **_who(caller)}
        refused = ToolVerdict(result=f"The tool {name} was blocked by policy. Tell the user it is not available.",
                              refused=True)
        try:
            answer = await self._ask(gateway, url, "tool.called", data, ToolCalledResponse)
        except _Refused:
            return refused
        except _Failed:
            return refused if gateway.parameters.has_flag(GatewayFlag.WORKER_FAIL_CLOSED) else None
        if answer is None:
            return None
        return ToolVerdict(result=answer.data.result, messages=list(answer.data.messages))

    async def _ask(self, gateway: Gateway, url: str, event: str, data: dict[str, Any],
                   shape: type[ModelT]) -> ModelT | None:
        """The worker's action for the event, or None when it asks for none (any 2xx but an action)."""
        body = {"gatewayId": gateway.id, "moment": self._clock.now().astimezone(UTC).isoformat(),
                "event": {"name": event, "data": data}}
        headers = {}
        nonce = await self._nonces.of(gateway.account_id)
        if nonce is not None:
            headers["X-Request-Nonce"] = nonce
        try:
            response = await self._egress.request(
                "POST", url, trust=await self._trust_of(gateway.account_id), json=body, headers=headers,
                timeout=self._settings.worker_timeout_seconds, max_bytes=self._settings.worker_response_max_bytes,
            )
        except EgressError as exc:
            log.warning("worker %s of gateway %s failed on %s: %s", loggable_url(url), gateway.id, event, exc.message)
            raise _Failed from exc
        if 400 <= response.status < 500:
            raise _Refused
        if not response.ok:
            log.warning("worker %s of gateway %s answered HTTP %s on %s", loggable_url(url), gateway.id,
                        response.status, event)
            raise _Failed
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != WORKER_ACTION:
            return None
        try:
            return shape.model_validate_json(response.body)
        except ValidationError as exc:
            log.warning("worker %s of gateway %s sent an invalid %s action (ignored): %s", loggable_url(url),
                        gateway.id, event, exc.errors(include_url=False, include_input=False)[:3])
            return None

    async def _rewrite(self, gateway: Gateway, draft: TurnDraft, answer: ReceivedResponse) -> None:
        trust = await self._trust_of(gateway.account_id)
        for rewrite in answer.data.rewrites:
            match rewrite:
                case Clear(argument=target):
                    _clear(draft, target or "messages")
                case AddMessage(message=message):
                    draft.conversation.append(message)
                case RemoveMessage(index=index):
                    if not draft.remove_message(index):
                        log.info("worker of gateway %s removed message %s, which does not exist", gateway.id, index)
                case AddSystem(message=text):
                    draft.system.append((WORKER_GROUP, text))
                case AddTool(tool=spec):
                    draft.tools.append((WORKER_GROUP, WorkerTool(spec)))
                case AddProtocolTool(tool=function):
                    draft.tools.append((WORKER_GROUP, ProtocolFunctionTool(
                        function, self._egress, trust=trust, timeout=self._tool_timeout,
                        caps=self._tool_caps)))
                case AddMcpSource(source=source):
                    tools = await self._mcp.tools(gateway, [source])
                    draft.tools += [(WORKER_GROUP, tool) for tool in tools]


def _clear(draft: TurnDraft, target: str) -> None:
    everything = target == "all"
    if everything or target == "messages":
        draft.clear_messages()
    if everything or target == "system":
        draft.clear_system()
    if everything or target == "tools":
        draft.clear_tools()
    if everything or target == "skills":
        draft.clear_skills()
    if everything or target == "meta":
        draft.clear_meta()


def _who(caller: Caller) -> dict[str, Any]:
    return {"origin": caller.call_source.value, "externalUserId": caller.external_user_id,
            "metadata": caller.metadata, "conversationToken": caller.conversation_token}
