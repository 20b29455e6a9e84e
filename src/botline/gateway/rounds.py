"""A model round as botline keeps it (`Round`), and how one is assembled from the upstream's JSON.

Shared by both model clients (the lean one and the openai SDK's), so they cannot disagree on what an
answer is: a completion body becomes a Round in one step; a stream's chunks are fed one by one to a
`StreamAssembler`, which keeps only running lists of text pieces and the tool calls being built, and
hands text and reasoning to the sink in as few calls as the caller wants (one per upstream read for the
lean client).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from botline.domain.conversations import TokenUsage
from botline.gateway.errors import UpstreamError
from botline.gateway.reasoning import ALL_KINDS, ReasoningKinds


class DeltaSink(Protocol):
    async def text(self, delta: str) -> None: ...

    async def reasoning(self, delta: str) -> None: ...


@dataclass
class Round:
    """What the model answered in one call."""

    content: str = ""
    reasoning: str = ""
    refusal: str = ""
    """The model declined (OpenAI's `refusal` field): its explanation, with no content."""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"
    usage: TokenUsage | None = None
    model: str = ""
    first_delta_at: float | None = None
    """`time.perf_counter()` at the first text or reasoning delta of a streamed call."""


def usage_of(data: Any) -> TokenUsage | None:
    """OpenAI's `usage` object, with `prompt_tokens_details.cached_tokens` when the provider sends it."""
    if not isinstance(data, dict):
        return None
    details = data.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return TokenUsage(
        prompt_tokens=int(data.get("prompt_tokens") or 0), completion_tokens=int(data.get("completion_tokens") or 0),
        cached_tokens=int(cached or 0),
    )


def failure_in(payload: Any) -> UpstreamError | None:
    """An OpenAI-style `{"error": ...}` body (some providers answer 200 with one, or stream one)."""
    if not isinstance(payload, dict) or "error" not in payload or payload.get("choices"):
        return None
    error = payload.get("error")
    message = error.get("message") if isinstance(error, dict) else str(error)
    return UpstreamError(f"The AI model failed: {message}")


def round_of(payload: Any, model: str, kinds: ReasoningKinds = ALL_KINDS) -> Round:
    """A non-streamed completion body as a Round, with the kinds of thinking the gateway keeps."""
    if not isinstance(payload, dict):
        raise UpstreamError("The AI model answered with something that is not JSON.")
    if (failure := failure_in(payload)) is not None:
        raise failure
    choices = payload.get("choices") or [{}]
    message = choices[0].get("message") or {}
    return Round(
        content=message.get("content") or "",
        reasoning=kinds.text_of(message),
        refusal=message.get("refusal") or "",
        tool_calls=list(message.get("tool_calls") or []),
        finish_reason=choices[0].get("finish_reason") or "stop",
        usage=usage_of(payload.get("usage")),
        model=str(payload.get("model") or model),
    )


TEXT = 0
REASONING = 1


class StreamAssembler:
    """Builds a Round from `chat.completion.chunk` objects, fed in order.

    Text and reasoning deltas wait in `_pending` until `flush`: consecutive pieces of one kind go to the
    sink as one call, and a change of kind flushes first, so order is kept.
    """

    def __init__(self, model: str, kinds: ReasoningKinds = ALL_KINDS) -> None:
        self._round = Round(model=model)
        self._kinds = kinds
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._refusal: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._pending: list[str] = []
        self._pending_kind = TEXT
        self._held: list[tuple[int, str]] = []
        """Pieces of another kind that arrived before `_pending`'s, in this read."""

    def feed(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            raise UpstreamError("The AI model streamed something that is not JSON.")
        if (failure := failure_in(chunk)) is not None:
            raise failure
        result = self._round
        if model := chunk.get("model"):
            result.model = str(model)
        if usage := chunk.get("usage"):
            result.usage = usage_of(usage)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if text := delta.get("content"):
                self._content.append(text)
                self._add(TEXT, text)
            if thought := self._kinds.text_of(delta):
                self._reasoning.append(thought)
                self._add(REASONING, thought)
            if refusal := delta.get("refusal"):
                self._refusal.append(refusal)
            for call_delta in delta.get("tool_calls") or ():
                index = call_delta.get("index") or 0
                calls = self._calls
                calls[index] = accumulate(calls[index], call_delta) if index in calls else dict(call_delta)
            if reason := choice.get("finish_reason"):
                result.finish_reason = reason

    def _add(self, kind: int, piece: str) -> None:
        if self._round.first_delta_at is None:
            self._round.first_delta_at = time.perf_counter()
        if kind != self._pending_kind and self._pending:
            self._held.append((self._pending_kind, "".join(self._pending)))
            self._pending = []
        self._pending_kind = kind
        self._pending.append(piece)

    async def flush(self, sink: DeltaSink) -> None:
        """Hands what arrived since the last flush to `sink`."""
        if self._held:
            held, self._held = self._held, []
            for kind, text in held:
                await _send(sink, kind, text)
        if self._pending:
            text = self._pending[0] if len(self._pending) == 1 else "".join(self._pending)
            self._pending = []
            await _send(sink, self._pending_kind, text)

    def result(self) -> Round:
        result = self._round
        result.content = "".join(self._content)
        result.reasoning = "".join(self._reasoning)
        result.refusal = "".join(self._refusal)
        result.tool_calls = [_tool_call(self._calls[i]) for i in sorted(self._calls)]
        return result


async def _send(sink: DeltaSink, kind: int, text: str) -> None:
    if kind == TEXT:
        await sink.text(text)
    else:
        await sink.reasoning(text)


def _tool_call(assembled: dict[str, Any]) -> dict[str, Any]:
    """An assembled call in the shape a message's `tool_calls` holds (no stream `index`; provider extras,
    such as Gemini's thought signatures, kept so they go back to the model with the call)."""
    call = {key: value for key, value in assembled.items() if key != "index"}
    call["id"] = call.get("id") or ""
    call["type"] = call.get("type") or "function"
    given = call.get("function")
    function: dict[str, Any] = given if isinstance(given, dict) else {}
    call["function"] = {**function, "name": function.get("name") or "", "arguments": function.get("arguments") or ""}
    return call


def accumulate(acc: dict[Any, Any], delta: dict[Any, Any]) -> dict[Any, Any]:
    """Merges a stream delta into what was assembled so far, by the openai SDK's own rules
    (`openai.lib.streaming._deltas.accumulate_delta`): strings and numbers add up, `index` and `type`
    are replaced, objects merge, lists of indexed objects merge by index, a value of another type
    leaves the assembled one as it is."""
    for key, value in delta.items():
        if key not in acc or acc[key] is None:
            if not _indexed(value):
                acc[key] = value
                continue
            acc[key] = []  # even the first indexed list is merged: one chunk may repeat an index
        current = acc[key]
        if key in ("index", "type"):
            acc[key] = value
        elif _addable(current, value):
            acc[key] = current + value
        elif isinstance(current, dict) and isinstance(value, dict):
            acc[key] = accumulate(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            _accumulate_list(current, value)
    return acc


def _addable(current: Any, value: Any) -> bool:
    return (isinstance(current, str) and isinstance(value, str)) or (
        isinstance(current, int | float) and isinstance(value, int | float)
    )


def _indexed(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(entry, dict) and "index" in entry for entry in value)


def _accumulate_list(current: list[Any], delta: list[Any]) -> None:
    if all(isinstance(x, str | int | float) for x in current) and (current or not _indexed(delta)):
        current.extend(delta)
        return
    for entry in delta:
        if not isinstance(entry, dict) or not isinstance(entry.get("index"), int):
            raise UpstreamError("The AI model streamed a list entry without an index.")
        index = entry["index"]
        if index < len(current) and isinstance(current[index], dict):
            current[index] = accumulate(current[index], entry)
        else:
            current.insert(index, dict(entry))
