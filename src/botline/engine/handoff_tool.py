"""The model's `handoff_to_human` tool and the TurnExtension that offers it.

Offered in chat-client conversations (web chat, Telegram, WhatsApp) when the gateway enables the
"Handoff" sentinel function or the chat client `clientParameters.handoff.enabled`. Calling it hands the
chat to a person and ends the turn with the client's handoff message, sent to the user once.
"""

from __future__ import annotations

from typing import Any

from botline.domain.gateways import Gateway, SentinelFunction
from botline.domain.handoff import HandoffTrigger
from botline.engine.client_cache import ChatClientCache
from botline.engine.handoff import HandoffService
from botline.gateway.caller import Caller
from botline.gateway.extensions import Contribution
from botline.gateway.tools import EndTurn, Tool, ToolFailure, ToolSpec, function_spec
from botline.store.base import Store

NAME = "handoff_to_human"
REASON_MAX = 500
INSTRUCTIONS = (
    "When the user asks to talk to a person, or you cannot help with what they need, call handoff_to_human "
    "with a short reason. A person then answers them; do not promise anything the business has not said."
)
HANDED_OFF = "The conversation is now with a person, who will answer the user. Do not write anything else."


class HandoffToHuman(Tool):
    name = NAME

    def __init__(self, store: Store, handoff: HandoffService, clients: ChatClientCache) -> None:
        self._store = store
        self._handoff = handoff
        self._clients = clients

    def spec(self) -> ToolSpec:
        return function_spec(self.name, "Hand this conversation to a person of the business.", {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "why a person is needed, in a sentence"}},
            "required": ["reason"],
        })

    async def run(self, arguments: dict[str, Any], caller: Caller) -> str:
        reason = arguments.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ToolFailure("reason must be a non-empty string.")
        if caller.session_id is None or caller.chat_client_id is None:
            raise ToolFailure("There is no conversation to hand over here.")
        client = await self._clients.get(caller.account_id, caller.chat_client_id)
        session = await self._store.sessions.get(caller.account_id, caller.session_id)
        if client is None or session is None:
            raise ToolFailure("This conversation has ended.")
        # The turn calling this is the chat's only running turn: it ends itself (EndTurn), not by a stop.
        await self._handoff.take(session, client, by=HandoffTrigger.MODEL, reason=reason.strip()[:REASON_MAX],
                                 stop_turns=False)
        raise EndTurn(HANDED_OFF, client.client_parameters.handoff.user_message)


class HandoffExtension:
    def __init__(self, store: Store, handoff: HandoffService, clients: ChatClientCache) -> None:
        self._clients = clients
        self._tool = HandoffToHuman(store, handoff, clients)

    async def contribute(self, gateway: Gateway, caller: Caller) -> Contribution:
        if caller.session_id is None or caller.chat_client_id is None:
            return Contribution()
        options = gateway.parameters.sentinel_options
        enabled = options is not None and SentinelFunction.HANDOFF in options.enabled_functions
        if not enabled:
            client = await self._clients.get(caller.account_id, caller.chat_client_id)
            enabled = client is not None and client.client_parameters.handoff.enabled
        return Contribution(instructions=[INSTRUCTIONS], tools=[self._tool]) if enabled else Contribution()
