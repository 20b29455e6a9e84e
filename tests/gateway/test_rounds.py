"""Assembling a streamed answer: tool-call deltas merge exactly as the openai SDK merges them, and the
text of one upstream read reaches the sink in one piece, in order."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from openai.lib.streaming._deltas import accumulate_delta

from botline.gateway.errors import UpstreamError
from botline.gateway.rounds import StreamAssembler, accumulate

SEQUENCES: list[list[dict[str, Any]]] = [
    [  # OpenAI: the head with id and name, then argument fragments
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"a"'}},
        {"index": 0, "function": {"arguments": ": 1}"}},
    ],
    [  # a provider that streams the name in pieces and repeats `type`
        {"index": 1, "id": "c", "type": "function", "function": {"name": "get_"}},
        {"index": 1, "type": "function", "function": {"name": "weather", "arguments": "{}"}},
    ],
    [  # Gemini: an extra object on the call, and nulls after the first fragment
        {"index": 0, "id": "x", "type": "function", "function": {"name": "g", "arguments": "{"},
         "extra_content": {"google": {"thought_signature": "sig"}}},
        {"index": 0, "id": None, "function": {"name": None, "arguments": "}"}},
    ],
]


@pytest.mark.parametrize("deltas", SEQUENCES)
def test_tool_call_deltas_merge_as_the_sdk_merges_them(deltas: list[dict[str, Any]]) -> None:
    ours: dict[str, Any] = copy.deepcopy(deltas[0])
    sdks: dict[object, object] = copy.deepcopy(deltas[0])  # type: ignore[arg-type]
    for delta in deltas[1:]:
        ours = accumulate(ours, copy.deepcopy(delta))
        sdks = accumulate_delta(sdks, copy.deepcopy(delta))  # type: ignore[arg-type]
    assert ours == sdks


def chunk(**delta: Any) -> dict[str, Any]:
    return {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def text(self, delta: str) -> None:
        self.calls.append(("text", delta))

    async def reasoning(self, delta: str) -> None:
        self.calls.append(("reasoning", delta))


async def test_one_read_reaches_the_sink_in_one_piece_per_kind_in_order() -> None:
    assembler = StreamAssembler("m")
    sink = Recorder()
    for piece in [chunk(reasoning_content="hm, "), chunk(reasoning_content="ok"), chunk(content="Hel"),
                  chunk(content="lo")]:
        assembler.feed(piece)
    await assembler.flush(sink)
    assembler.feed(chunk(content="!"))
    await assembler.flush(sink)
    assert sink.calls == [("reasoning", "hm, ok"), ("text", "Hello"), ("text", "!")]
    result = assembler.result()
    assert (result.reasoning, result.content) == ("hm, ok", "Hello!")


async def test_a_streamed_error_fails_the_round() -> None:
    with pytest.raises(UpstreamError, match="The AI model failed: overloaded"):
        StreamAssembler("m").feed({"error": {"message": "overloaded"}})
