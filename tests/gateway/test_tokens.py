"""Token counting for the context budget: exact with an encoder, off the event loop when large."""

from __future__ import annotations

import threading

import pytest
import tiktoken

from botline.domain.gateways import ContextOverflowAction
from botline.gateway.context import fit_context
from botline.gateway.errors import ContextTooLarge
from botline.gateway.tokens import CHUNK_CHARS, PER_MESSAGE_OVERHEAD, TokenCounter, TokenCounters
from tests.support.tokenizer import exact_tokens

__all__ = ["exact_tokens"]

MB = 1024 * 1024


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


async def test_an_unknown_model_is_counted_with_the_default_encoding(exact_tokens: tiktoken.Encoding) -> None:
    counter = await TokenCounters().for_model("llama-3-70b")
    assert await counter.count("héllo") == 6  # the byte encoder: one token per UTF-8 byte


async def test_large_texts_are_counted_exactly_on_a_worker_thread(exact_tokens: tiktoken.Encoding) -> None:
    threads: set[str] = set()

    def encode(text: str) -> list[int]:
        threads.add(threading.current_thread().name)
        return exact_tokens.encode(text, disallowed_special=())

    counter = TokenCounter(encode)
    assert await counter.count("short") == 5
    assert threads == {threading.current_thread().name}
    threads.clear()
    text = "word " * (CHUNK_CHARS // 2)  # two and a half chunks
    assert await counter.count(text) == len(text)
    assert threading.current_thread().name not in threads


async def test_truncate_drops_the_oldest_of_a_multi_megabyte_history(exact_tokens: tiktoken.Encoding) -> None:
    counter = await TokenCounters().for_model("fake-model")
    history = [user(f"{n} " + "x" * MB) for n in range(4)] + [user("the question")]
    kept = await fit_context(history, maximum=2 * MB, action=ContextOverflowAction.TRUNCATE, counter=counter)
    assert [m["content"][:2] for m in kept] == ["3 ", "th"]


async def test_throw_names_the_exact_size(exact_tokens: tiktoken.Encoding) -> None:
    counter = await TokenCounters().for_model("fake-model")
    history = [user("x" * MB), user("the question")]
    with pytest.raises(ContextTooLarge) as caught:
        await fit_context(history, maximum=MB, action=ContextOverflowAction.THROW, counter=counter)
    total = MB + len("the question") + 2 * PER_MESSAGE_OVERHEAD
    assert f"about {total} tokens" in caught.value.message
