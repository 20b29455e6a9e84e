"""Context shaping rules, checked directly on message lists."""

from __future__ import annotations

import pytest

from botline.domain.gateways import ContextOverflowAction
from botline.gateway.context import (
    TRUNCATED_TOOL_RESPONSE,
    apply_tool_context_count,
    apply_user_prompt_template,
    fit_context,
)
from botline.gateway.errors import ContextTooLarge
from botline.gateway.tokens import TokenCounter

SYSTEM = {"role": "system", "content": "s" * 40}
APPROXIMATE = TokenCounter()  # chars/4


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


async def test_a_conversation_that_fits_is_untouched() -> None:
    messages = [SYSTEM, user("hello")]
    kept = await fit_context(messages, maximum=1000, action=ContextOverflowAction.THROW, counter=APPROXIMATE)
    assert kept == messages


async def test_truncate_keeps_system_messages_and_drops_tool_responses_with_their_call() -> None:
    call = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    tool = {"role": "tool", "tool_call_id": "c1", "content": "r" * 200}
    messages = [SYSTEM, user("old " * 50), call, tool, {"role": "assistant", "content": "ok"}, user("new")]
    kept = await fit_context(messages, maximum=40, action=ContextOverflowAction.TRUNCATE, counter=APPROXIMATE)
    assert kept[0] == SYSTEM and kept[-1] == user("new")
    assert call not in kept and tool not in kept


async def test_reserved_tokens_for_tool_definitions_count_against_the_budget() -> None:
    messages = [SYSTEM, user("hello")]
    with pytest.raises(ContextTooLarge):
        await fit_context(messages, maximum=30, action=ContextOverflowAction.THROW, counter=APPROXIMATE, reserved=25)


def test_tool_context_count_keeps_only_the_newest_tool_responses() -> None:
    messages = [{"role": "tool", "tool_call_id": str(n), "content": f"r{n}"} for n in range(3)]
    shaped = apply_tool_context_count(messages, 2)
    assert [m["content"] for m in shaped] == [TRUNCATED_TOOL_RESPONSE, "r1", "r2"]
    assert [m["content"] for m in apply_tool_context_count(messages, 0)] == [TRUNCATED_TOOL_RESPONSE] * 3


def test_the_template_wraps_text_parts_and_leaves_images_alone() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    messages = [user("plain"), {"role": "user", "content": [{"type": "text", "text": "look"}, image]},
                {"role": "assistant", "content": "not me"}]
    shaped = apply_user_prompt_template(messages, "Q: {prompt}")
    assert shaped[0]["content"] == "Q: plain"
    assert shaped[1]["content"] == [{"type": "text", "text": "Q: look"}, image]
    assert shaped[2]["content"] == "not me"
