"""Token estimates for the context budget: tiktoken when the encoding loads, else chars/4.

tiktoken fetches its BPE files on first use; offline that fails fast, so each encoding is tried
once (off the event loop) and the failure remembered: counting falls back to chars/4.

Exact counting costs about 0.1 s per MB (a history plus sources can be several MB), so texts
beyond INLINE_CHARS are counted on a worker thread: tiktoken's encoder releases the GIL, and the
text goes in CHUNK_CHARS pieces so that turning each piece's tokens into a Python list (which
holds the GIL) stays well under a millisecond. At most COUNTING_THREADS counts run at once, so
large turns cannot take every thread of the default executor (DNS lookups use it too).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import tiktoken

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
PER_MESSAGE_OVERHEAD = 4
"""OpenAI's chat format adds a few tokens per message (role and separators)."""

DEFAULT_ENCODING = "o200k_base"
"""For model names tiktoken does not know (most non-OpenAI models): close enough for a budget."""

INLINE_CHARS = 16_000
"""Up to this many characters in one call are counted on the event loop (about 2 ms at most)."""
CHUNK_CHARS = 256_000
COUNTING_THREADS = 2

Encode = Callable[[str], list[int]]


def approximate(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


class TokenCounter:
    """One model's token counts: exact with an encoder, else chars/4 (cheap, always on the loop).

    A chunk boundary may split a token in two, so a count of a text longer than CHUNK_CHARS can be
    a token high per chunk: nothing a budget notices.
    """

    def __init__(self, encode: Encode | None = None, *, threads: asyncio.Semaphore | None = None) -> None:
        self._encode = encode
        self._threads = threads or asyncio.Semaphore(COUNTING_THREADS)

    async def count(self, text: str) -> int:
        return (await self.count_each([text]))[0]

    async def count_each(self, texts: Sequence[str]) -> list[int]:
        if self._encode is None or sum(map(len, texts)) <= INLINE_CHARS:
            return [self._count(text) for text in texts]
        async with self._threads:
            return await asyncio.to_thread(lambda: [self._count(text) for text in texts])

    def _count(self, text: str) -> int:
        if self._encode is None:
            return approximate(text)
        return sum(len(self._encode(text[start:start + CHUNK_CHARS])) for start in range(0, len(text), CHUNK_CHARS))


class TokenCounters:
    """Per-model counters, resolved once per model."""

    def __init__(self) -> None:
        self._by_model: dict[str, TokenCounter] = {}
        self._threads = asyncio.Semaphore(COUNTING_THREADS)

    async def for_model(self, model: str) -> TokenCounter:
        counter = self._by_model.get(model)
        if counter is None:
            counter = TokenCounter(await asyncio.to_thread(self._load, model), threads=self._threads)
            self._by_model[model] = counter
        return counter

    @staticmethod
    def _load(model: str) -> Encode | None:
        try:
            name = tiktoken.encoding_name_for_model(model)
        except KeyError:
            name = DEFAULT_ENCODING
        try:
            encoding = tiktoken.get_encoding(name)
            encoding.encode("warm-up")
        except Exception as exc:  # tiktoken raises requests/OS errors when the BPE file can't be fetched
            log.info("tiktoken encoding %s unavailable (%s); counting tokens as chars/4", name, type(exc).__name__)
            return None
        return lambda text: encoding.encode(text, disallowed_special=())


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
