"""Shaping the message list: templates, the context budget, and stale tool output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botline.domain.gateways import ContextOverflowAction
from botline.gateway.errors import ContextTooLarge
from botline.gateway.tokens import PER_MESSAGE_OVERHEAD, TokenCounter, message_text

ChatMessage = dict[str, Any]
TRUNCATED_TOOL_RESPONSE = "[tool response truncated - call this tool again]"
PROMPT_PLACEHOLDER = "{prompt}"


def apply_user_prompt_template(messages: list[ChatMessage], template: str) -> list[ChatMessage]:
    """Wraps every user message's text in the gateway's template (`{prompt}` is the text)."""
    shaped: list[ChatMessage] = []
    for message in messages:
        if message.get("role") == "user":
            message = {**message, "content": _template_content(message.get("content"), template)}
        shaped.append(message)
    return shaped


def _template_content(content: Any, template: str) -> Any:
    if isinstance(content, str):
        return template.replace(PROMPT_PLACEHOLDER, content)
    if isinstance(content, list):
        return [
            {**part, "text": template.replace(PROMPT_PLACEHOLDER, str(part.get("text", "")))}
            if isinstance(part, dict) and part.get("type") == "text"
            else part
            for part in content
        ]
    return content


def apply_tool_context_count(messages: list[ChatMessage], keep: int) -> list[ChatMessage]:
    """Only the last `keep` tool responses keep their content; older ones become a placeholder."""
    tool_positions = [i for i, m in enumerate(messages) if m.get("role") == "tool"]
    stale = set(tool_positions[: max(len(tool_positions) - keep, 0)])
    return [
        {**m, "content": TRUNCATED_TOOL_RESPONSE} if i in stale else m for i, m in enumerate(messages)
    ]


async def fit_context(
    messages: Sequence[ChatMessage],
    *,
    maximum: int,
    action: ContextOverflowAction,
    counter: TokenCounter,
    reserved: int = 0,
) -> list[ChatMessage]:
    """Returns messages that fit `maximum` tokens (minus `reserved` for tool definitions).

    Throw: ContextTooLarge, no model call. Truncate: drop the oldest non-system messages (with the
    tool responses that belong to them) until it fits, always keeping the last user message.
    """
    sizes = [size + PER_MESSAGE_OVERHEAD for size in await counter.count_each([message_text(m) for m in messages])]
    budget = maximum - reserved
    total = sum(sizes)
    if total <= budget:
        return list(messages)
    if action is ContextOverflowAction.THROW:
        raise ContextTooLarge(
            f"The conversation has about {total} tokens, more than this gateway's limit of {budget}."
        )
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    dropped: set[int] = set()
    for index, message in enumerate(messages):
        if total <= budget:
            break
        if message.get("role") == "system" or index == last_user or index in dropped:
            continue
        dropped.add(index)
        total -= sizes[index]
        # A dropped assistant tool call takes its tool responses with it (an orphan is invalid).
        if message.get("tool_calls"):
            for follower in range(index + 1, len(messages)):
                if messages[follower].get("role") != "tool":
                    break
                dropped.add(follower)
                total -= sizes[follower]
    if total > budget:
        raise ContextTooLarge(
            f"The last message alone is too large for this gateway (limit {budget} tokens)."
        )
    return [m for i, m in enumerate(messages) if i not in dropped]
