"""queryStrategy: what a turn searches for, from the conversation.

`Plain` the last user message; `Concatenate` the last concatenateContextSize user messages, one per
line; `UserRewrite` / `FullRewrite` a model call (the gateway's own upstream and model) that rewrites
the last rewriteContextSize user messages (FullRewrite: user and assistant messages, twice as many)
into standalone search queries, so "and how much does it cost?" after a question about the Premium
plan searches for the Premium plan's price. A failed rewrite falls back to Plain.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from botline.domain.gateways import Gateway, QueryStrategy
from botline.gateway.caller import Caller
from botline.gateway.context import ChatMessage
from botline.gateway.errors import GatewayError
from botline.knowledge.asking import ModelAsker

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 3
"""Messages a Concatenate or rewrite strategy reads when its size is 0 (unset)."""
MAX_CONTEXT = 20
MAX_QUERIES = 3
QUERY_MAX = 500
MESSAGE_MAX = 2_000
"""Characters of one message given to the rewrite model."""
REWRITE_INSTRUCTION = (
    "You turn the end of a conversation into search queries for a knowledge base. Write the user's latest "
    "request as 1 to 3 standalone search queries, one per line, in the user's language, resolving pronouns "
    "and follow-ups (\"and how much is it?\") from the earlier messages. Write only the queries."
)


def text_of(message: ChatMessage) -> str:
    """The text a message carries (its text parts), without images or files."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _size(value: int) -> int:
    return min(MAX_CONTEXT, value if value > 0 else DEFAULT_CONTEXT)


def _recent(messages: Sequence[ChatMessage], roles: tuple[str, ...], count: int) -> list[ChatMessage]:
    kept = [m for m in messages if m.get("role") in roles and text_of(m).strip()]
    return kept[-count:]


class QueryWriter:
    def __init__(self, asker: ModelAsker) -> None:
        self._asker = asker

    async def queries(self, gateway: Gateway, caller: Caller, messages: Sequence[ChatMessage]) -> list[str]:
        params = gateway.parameters
        strategy = params.query_strategy
        sizes = params.query_strategy_parameters
        last = _recent(messages, ("user",), 1)
        if not last:
            return []
        if strategy is QueryStrategy.CONCATENATE:
            recent = _recent(messages, ("user",), _size(sizes.concatenate_context_size))
            return ["\n".join(text_of(m) for m in recent)]
        if strategy in (QueryStrategy.USER_REWRITE, QueryStrategy.FULL_REWRITE):
            full = strategy is QueryStrategy.FULL_REWRITE
            roles = ("user", "assistant") if full else ("user",)
            count = _size(sizes.rewrite_context_size) * (2 if full else 1)
            try:
                return await self._rewrite(gateway, caller, _recent(messages, roles, count))
            except GatewayError as exc:
                log.warning("query rewrite failed, searching the last message as written: %s", exc.message)
        return [text_of(last[0])]

    async def _rewrite(self, gateway: Gateway, caller: Caller, recent: list[ChatMessage]) -> list[str]:
        transcript = "\n".join(f"{m['role']}: {text_of(m)[:MESSAGE_MAX]}" for m in recent)
        answer = await self._asker.ask(gateway, [
            {"role": "system", "content": REWRITE_INSTRUCTION},
            {"role": "user", "content": transcript},
        ], session_id=caller.session_id)
        queries = [line.strip(" -*\t")[:QUERY_MAX] for line in answer.splitlines() if line.strip(" -*\t")]
        return queries[:MAX_QUERIES] or [text_of(recent[-1])]
