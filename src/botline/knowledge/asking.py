"""One model call outside a turn's conversation (query rewriting, /api/v1/answer), on a gateway's
upstream and model, with its usage recorded on that gateway like any other call."""

from __future__ import annotations

from dataclasses import dataclass

from botline.domain.clock import Clock
from botline.domain.conversations import TokenUsage
from botline.domain.gateways import Gateway
from botline.domain.usage import UsageRecord
from botline.gateway.accounting import UsageRecorder
from botline.gateway.completion import complete
from botline.gateway.connections import Upstreams
from botline.gateway.context import ChatMessage
from botline.gateway.errors import GatewayError
from botline.gateway.llm import ClientPool
from botline.gateway.tokens import approximate, message_text


@dataclass(frozen=True)
class ModelAsker:
    clients: ClientPool
    usage: UsageRecorder
    clock: Clock
    upstreams: Upstreams

    async def ask(self, gateway: Gateway, messages: list[ChatMessage], *, session_id: str | None = None) -> str:
        """The model's text answer; GatewayError (recorded as an error) when the upstream fails."""
        params = gateway.parameters
        target = await self.upstreams.of(gateway)  # its own address or its LLM connection
        client = self.clients.get(target.base_address, target.api_key, target.trust)
        record = UsageRecord(account_id=gateway.account_id, gateway_id=gateway.id, model=params.model_name,
                             session_id=session_id, at=self.clock.now())
        try:
            answer = await complete(client, {"model": params.model_name, "messages": messages})
        except GatewayError:
            record.error = True
            self.usage.add(record)
            raise
        usage = answer.usage or TokenUsage(prompt_tokens=sum(approximate(message_text(m)) for m in messages),
                                           completion_tokens=approximate(answer.content))
        record.input_tokens, record.output_tokens = usage.prompt_tokens, usage.completion_tokens
        self.usage.add(record)
        return answer.content
