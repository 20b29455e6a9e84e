"""One conformance suite, run against both model clients (botline's lean aiohttp client and the openai
SDK's), over the fake LLM: what a turn gets back, what it sends, and how each failure reaches the
person, must not depend on which client made the call (`llm.client`)."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from botline.config import LLMSettings
from botline.egress import Egress, EgressPolicy, Trust
from botline.gateway.completion import SdkModelClient
from botline.gateway.errors import UpstreamError
from botline.gateway.lean_client import LeanModelClient
from botline.gateway.llm import ClientPool
from botline.gateway.model_client import ModelClient
from botline.gateway.reasoning import ALL_KINDS, ReasoningKinds
from tests.conftest import UPSTREAM_KEY
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall

CLIENTS = ["lean", "sdk"]
FAST_RETRY = {"retry-after-ms": "10"}
"""On a retried error answer: the upstream asks for a 10 ms wait, so a retry costs no backoff."""
MAX_BYTES = 64 * 1024
Make = Callable[..., ModelClient]


class Sink:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.reasonings: list[str] = []
        self.first = asyncio.Event()

    async def text(self, delta: str) -> None:
        self.texts.append(delta)
        self.first.set()

    async def reasoning(self, delta: str) -> None:
        self.reasonings.append(delta)


@pytest.fixture(params=CLIENTS)
async def make(request: pytest.FixtureRequest, fake_llm: FakeLLM) -> AsyncIterator[Make]:
    """Builds the client under test, through the switch (`llm.client`), for the fake LLM."""
    async with Egress(EgressPolicy()) as egress:
        def build(*, retries: int = 1, timeout: float = 10.0, trust: Trust = Trust.OPERATOR,
                  base: str | None = None, key: str | None = UPSTREAM_KEY, max_bytes: int = MAX_BYTES) -> ModelClient:
            settings = LLMSettings(client=request.param, max_retries=retries, request_timeout_seconds=timeout)
            pool = ClientPool(settings, egress, max_response_bytes=max_bytes)
            client = pool.model(base or fake_llm.base_url, key, trust)
            assert isinstance(client, LeanModelClient if request.param == "lean" else SdkModelClient)
            return client
        yield build


def ask(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": text}], **extra}


async def failure(call: Any) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        await call
    return caught.value


class TestAnswers:
    async def test_a_completion(self, make: Make, fake_llm: FakeLLM) -> None:
        fake_llm.script(Reply(text="Hello there", reasoning="thinking", prompt_tokens=11, completion_tokens=3,
                              cached_tokens=8))
        answer = await make().complete(ask(temperature=0.2))
        assert (answer.content, answer.reasoning, answer.finish_reason) == ("Hello there", "thinking", "stop")
        assert answer.model == "fake-model"
        assert answer.usage is not None
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.cached_tokens) == (11, 3, 8)
        sent = fake_llm.requests[-1]
        assert sent.body == ask(temperature=0.2)  # the body as shaped, nothing added
        assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"

    async def test_a_stream_delivers_every_delta_and_asks_for_usage(self, make: Make, fake_llm: FakeLLM) -> None:
        fake_llm.script(Reply(text="one two three four", reasoning="let me see", prompt_tokens=20,
                              completion_tokens=4, cached_tokens=16))
        sink = Sink()
        answer = await make().stream(ask(), sink)
        assert "".join(sink.texts) == answer.content == "one two three four"
        assert "".join(sink.reasonings) == answer.reasoning == "let me see"
        assert answer.usage is not None  # from the include_usage chunk
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.cached_tokens) == (20, 4, 16)
        assert answer.first_delta_at is not None
        assert fake_llm.requests[-1].body["stream_options"] == {"include_usage": True}

    async def test_consecutive_streams_share_one_connection(self, make: Make, fake_llm: FakeLLM) -> None:
        """The end of a streamed body may come in a read after `data: [DONE]`: it is read, so the next
        call reuses the connection instead of opening one per call (the lean client's pooling; the SDK's
        transport has its own)."""
        client = make()
        if not isinstance(client, LeanModelClient):
            pytest.skip("the SDK client's connections are its transport's")
        for text in ("first", "second", "third"):
            fake_llm.script(Reply(text=text, end_delay=0.05))
            assert (await client.stream(ask(), Sink())).content == text
        ports = {request.peer_port for request in fake_llm.requests[-3:]}
        assert len(ports) == 1 and None not in ports

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_typed_thinking_is_kept_by_kind(self, make: Make, fake_llm: FakeLLM, streamed: bool) -> None:
        entries = [{"type": "reasoning.summary", "summary": "Short."}, {"type": "reasoning.text", "text": "Long."},
                   {"type": "reasoning.encrypted", "data": "gAAA"}]
        client, kept = make(), []
        for kinds in (ALL_KINDS, ReasoningKinds(summaries=False), ReasoningKinds(details=False)):
            fake_llm.script(Reply(text="ok", reasoning_details=entries))
            sink = Sink()
            answer = await (client.stream(ask(), sink, kinds) if streamed else client.complete(ask(), kinds))
            assert "".join(sink.reasonings) == (answer.reasoning if streamed else "")
            kept.append(answer.reasoning)
        assert kept == ["Short.Long.", "Long.", "Short."]  # never twice (OpenRouter repeats it flat), no ciphertext

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_tool_calls_are_assembled_whole(self, make: Make, fake_llm: FakeLLM, streamed: bool) -> None:
        calls = [ToolCall("lookup_order", {"order": "A-1", "note": "é ünïcode"}, id="call_1"),
                 ToolCall("weather", '{"city": "São Paulo"}', id="call_2")]
        fake_llm.script(Reply(text="", tool_calls=calls))
        client = make()
        answer = await (client.stream(ask(), Sink()) if streamed else client.complete(ask()))
        assert answer.finish_reason == "tool_calls"
        assert answer.tool_calls == [
            {"id": "call_1", "type": "function",
             "function": {"name": "lookup_order", "arguments": calls[0].arguments_json()}},
            {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city": "São Paulo"}'}},
        ]

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_a_refusal(self, make: Make, fake_llm: FakeLLM, streamed: bool) -> None:
        fake_llm.script(Reply(refusal="I can't help with that."))
        client = make()
        answer = await (client.stream(ask(), Sink()) if streamed else client.complete(ask()))
        assert (answer.content, answer.refusal) == ("", "I can't help with that.")


class TestRetries:
    @pytest.mark.parametrize("status", [408, 409, 429, 500, 503])
    async def test_retried_statuses(self, make: Make, fake_llm: FakeLLM, status: int) -> None:
        fake_llm.script(Reply(status=status, headers=FAST_RETRY), Reply(text="fine"))
        assert (await make().complete(ask())).content == "fine"
        assert len(fake_llm.requests) == 2

    async def test_a_refused_request_is_not_retried(self, make: Make, fake_llm: FakeLLM) -> None:
        fake_llm.script(Reply(status=400, error_message="messages[0] is malformed", headers=FAST_RETRY))
        error = await failure(make().complete(ask()))
        assert (error.message, error.status_code) == ("The AI model refused the request: messages[0] is malformed", 502)
        assert len(fake_llm.requests) == 1

    async def test_x_should_retry_overrides_the_status(self, make: Make, fake_llm: FakeLLM) -> None:
        fake_llm.script(Reply(status=503, headers={"x-should-retry": "false"}))
        await failure(make().complete(ask()))
        assert len(fake_llm.requests) == 1
        fake_llm.script(Reply(status=400, headers={"x-should-retry": "true", **FAST_RETRY}), Reply(text="ok"))
        assert (await make().complete(ask())).content == "ok"
        assert len(fake_llm.requests) == 3

    async def test_a_short_retry_after_is_honoured_instead_of_the_backoff(self, make: Make, fake_llm: FakeLLM) -> None:
        fake_llm.script(Reply(status=429, retry_after=0.02), Reply(text="ok"))
        started = time.monotonic()
        assert (await make().complete(ask())).content == "ok"
        assert time.monotonic() - started < 0.3  # the backoff alone would wait 0.375-0.5 s

    async def test_a_retry_after_date_is_waited_out(self, make: Make, fake_llm: FakeLLM) -> None:
        in_two_seconds = email.utils.formatdate(time.time() + 2, usegmt=True)
        fake_llm.script(Reply(status=503, headers={"Retry-After": in_two_seconds}), Reply(text="ok"))
        started = time.monotonic()
        assert (await make().complete(ask())).content == "ok"
        assert time.monotonic() - started >= 0.9  # a date whole seconds away (the backoff waits at most 0.5 s)

    @pytest.mark.parametrize("header", ["121", "date"])
    async def test_a_retry_after_past_the_cap_is_not_waited(self, make: Make, fake_llm: FakeLLM, header: str) -> None:
        value = email.utils.formatdate(time.time() + 3600, usegmt=True) if header == "date" else header
        fake_llm.script(Reply(status=429, error_message="slow down", headers={"Retry-After": value}))
        started = time.monotonic()
        error = await failure(make().complete(ask()))
        assert time.monotonic() - started < 1
        assert (error.message, error.status_code) == ("The AI model is rate limited: slow down", 429)
        assert error.retry_after == (121 if header == "121" else None)
        assert len(fake_llm.requests) == 1

    async def test_a_dropped_connection_is_retried(self, make: Make, fake_llm: FakeLLM) -> None:
        fake_llm.script(Reply(drop_connection=True), Reply(text="back"))
        assert (await make().complete(ask())).content == "back"
        assert len(fake_llm.requests) == 2


class TestFailures:
    """What the person (through the pipeline's callers) is told: the same sentence from both clients."""

    async def test_retries_run_out(self, make: Make, fake_llm: FakeLLM) -> None:
        fake_llm.script(*[Reply(status=500, error_message="db-7 exploded", headers=FAST_RETRY)] * 3)
        error = await failure(make(retries=2).complete(ask()))
        assert (error.message, error.status_code, error.upstream_status) == ("The AI model failed: db-7 exploded",
                                                                             502, 500)
        assert len(fake_llm.requests) == 3

    async def test_wrong_credentials(self, make: Make, fake_llm: FakeLLM) -> None:
        error = await failure(make(key="wrong").complete(ask()))
        assert error.message == "The AI model rejected the gateway's credentials: Incorrect API key provided"

    async def test_a_body_that_is_not_json_names_the_status(self, make: Make, fake_llm: FakeLLM) -> None:
        fake_llm.script(Reply(status=502, headers={"x-should-retry": "false", "Content-Type": "text/html"}))
        error = await failure(make().complete(ask()))
        assert error.message.startswith("The AI model failed: ")

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_a_stall_times_out(self, make: Make, fake_llm: FakeLLM, streamed: bool) -> None:
        hold = asyncio.Event()
        fake_llm.script(Reply(text="late", hold=hold))
        client = make(retries=0, timeout=0.2)
        try:
            error = await failure(client.stream(ask(), Sink()) if streamed else client.complete(ask()))
        finally:
            hold.set()
        assert (error.message, error.status_code) == ("The AI model did not answer in time.", 504)

    async def test_an_unreachable_upstream(self, make: Make, fake_llm: FakeLLM) -> None:
        base = fake_llm.base_url
        await fake_llm.stop()
        error = await failure(make(retries=0, base=base).complete(ask()))
        assert (error.message, error.status_code) == ("The AI model could not be reached.", 502)

    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
    async def test_the_egress_policy_refuses_a_tenants_internal_address(
        self, make: Make, fake_llm: FakeLLM, host: str
    ) -> None:
        base = fake_llm.base_url.replace("127.0.0.1", host)
        error = await failure(make(trust=Trust.TENANT, base=base).complete(ask()))
        assert error.message == (
            "The AI model's address is not allowed by this server's egress policy (security.egress)."
        )
        assert fake_llm.requests == []

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_an_answer_past_the_cap(self, make: Make, fake_llm: FakeLLM, streamed: bool) -> None:
        fake_llm.script(Reply(text="word " * 2000))
        client = make(retries=0, max_bytes=4096)
        error = await failure(client.stream(ask(), Sink()) if streamed else client.complete(ask()))
        assert error.message == (
            "The AI model's answer is larger than this server accepts (security.egress.model_response_max_bytes)."
        )


class TestCancellation:
    async def test_cancelling_a_stream_closes_the_upstream_request(self, make: Make, fake_llm: FakeLLM) -> None:
        fake_llm.script(Reply(text="word " * 200, chunk_delay=0.01))
        sink = Sink()
        call = asyncio.create_task(make().stream(ask(), sink))
        await asyncio.wait_for(sink.first.wait(), 5)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await fake_llm.wait_for_cancelled(1)  # the provider saw the request go: it stops generating

    async def test_cancelling_while_waiting_for_the_answer(self, make: Make, fake_llm: FakeLLM) -> None:
        hold = asyncio.Event()
        fake_llm.script(Reply(text="never", hold=hold))
        call = asyncio.create_task(make().complete(ask()))
        await fake_llm.wait_for_requests(1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await fake_llm.wait_for_cancelled(1)
