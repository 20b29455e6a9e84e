"""Token estimates for the context budget: tiktoken when the encoding loads, else chars/4.

tiktoken fetches its BPE files on first use; offline that fails fast, so each encoding is tried
once (off the event loop) and the failure remembered: counting falls back to chars/4.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import tiktoken

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
PER_MESSAGE_OVERHEAD = 4
"""OpenAI's chat format adds a few tokens per message (role and separators)."""

DEFAULT_ENCODING = "o200k_base"
"""For model names tiktoken does not know (most non-OpenAI models): close enough for a budget."""

Counter = Callable[[str], int]


def approximate(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


class TokenCounters:
    """Per-model counters, resolved once per model."""

    def __init__(self) -> None:
        self._by_model: dict[str, Counter] = {}

    async def for_model(self, model: str) -> Counter:
        counter = self._by_model.get(model)
        if counter is None:
            counter = await asyncio.to_thread(self._load, model)
            self._by_model[model] = counter
        return counter

    @staticmethod
    def _load(model: str) -> Counter:
        try:
            name = tiktoken.encoding_name_for_model(model)
        except KeyError:
            name = DEFAULT_ENCODING
        try:
            encoding = tiktoken.get_encoding(name)
            encoding.encode("warm-up")
        except Exception as exc:  # tiktoken raises requests/OS errors when the BPE file can't be fetched
            log.info("tiktoken encoding %s unavailable (%s); counting tokens as chars/4", name, type(exc).__name__)
            return approximate
        return lambda text: len(encoding.encode(text, disallowed_special=()))


def message_text(message: dict[str, Any]) -> str:
    """All the text of a chat message that costs tokens (content parts, tool calls)."""
    content = message.get("content")
    parts: list[str] = []
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        parts.append(str(function.get("name", "")))
        parts.append(str(function.get("arguments", "")))
    return "\n".join(parts)


def count_message(message: dict[str, Any], counter: Counter) -> int:
    return counter(message_text(message)) + PER_MESSAGE_OVERHEAD
