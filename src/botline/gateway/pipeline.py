"""One turn: assemble the context, call the model, run the tool loop, account for usage.

Every channel (web chat, Telegram, WhatsApp, /v1, scheduled continuations) calls `TurnPipeline.run`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import orjson

from botline.config import EgressSettings, LLMSettings
from botline.domain.clock import Clock
from botline.domain.conversations import TokenUsage
from botline.domain.gateways import Gateway, GatewayFlag, ProtocolFunction
from botline.domain.llm_connections import ConnectionStats
from botline.domain.usage import UsageRecord
from botline.egress import Egress, Trust
from botline.gateway import explanations
from botline.gateway.accounting import UsageRecorder
from botline.gateway.caller import Caller
from botline.gateway.connection_meter import ConnectionMeter
from botline.gateway.connections import Upstream, Upstreams
from botline.gateway.context import ChatMessage, apply_tool_context_count, apply_user_prompt_template, fit_context
from botline.gateway.draft import TurnDraft, TurnHook
from botline.gateway.errors import GatewayError, SourceUnavailable
from botline.gateway.extensions import RoundShaper, TurnExtension, TurnStage, UsedDocument
from botline.gateway.guards import (
    CONTENT_FILTER,
    GuardedTurn,
    InputScreen,
    TurnBudget,
    TurnCharge,
    TurnGuard,
    TurnRouter,
)
from botline.gateway.llm import ClientPool
from botline.gateway.model_client import ModelClient
from botline.gateway.multimodal import ModelInputs
from botline.gateway.providers import adapt
from botline.gateway.reasoning import REASONING_FIELD, ReasoningPolicy
from botline.gateway.remote import SOURCE_UNAVAILABLE, RemoteFetcher
from botline.gateway.rounds import Round
from botline.gateway.tokens import TokenCounters, approximate, message_text
from botline.gateway.tools import (
    EndTurn,
    ProtocolFunctionTool,
    ResponseCaps,
    Tool,
    ToolSet,
    images_message,
    no_tool,
)
from botline.logs import loggable_url
from botline.media import OutboundMedia
from botline.media.answer_images import fetch_answer_images
from botline.metrics import Metrics

log = logging.getLogger(__name__)
WITHHELD = "[This message was withheld by content moderation.]"


class ToolStatus(StrEnum):
    STARTED = "started"
    FINISHED = "finished"


class TurnSink(Protocol):
    """Receives a turn's progress as it happens (streaming consumers)."""

    async def text(self, delta: str) -> None: ...

    async def reasoning(self, delta: str) -> None: ...

    async def tool(self, name: str, status: ToolStatus, explanation: str | None = None) -> None:
        """A server-side tool starts or finishes; `explanation` is the model's one-line reason
        (toolInvocationExplanations)."""


class NullSink:
    """For callers that only want the final result."""

    async def text(self, delta: str) -> None:
        return None

    async def reasoning(self, delta: str) -> None:
        return None

    async def tool(self, name: str, status: ToolStatus, explanation: str | None = None) -> None:
        return None


@dataclass
class TurnRequest:
    gateway: Gateway
    messages: list[ChatMessage]
    """The conversation so far, OpenAI shape, ending with the new user input."""
    caller: Caller
    extra_context: str | None = None
    context_location: str | None = None
    instructions: Sequence[str] = ()
    """Extra system blocks from hooks (memories, channel notes)."""
    tools: Sequence[Tool] = ()
    """Built-in tools from hooks (memory, schedules)."""
    client_tools: list[dict[str, Any]] | None = None
    """/v1 caller's own tools: offered to the model, returned to the caller, never executed here."""
    client_parameters: dict[str, Any] = field(default_factory=dict)
    """/v1 caller's other OpenAI parameters; the gateway's own settings win over them."""
    stream: bool = False
    on_route: Callable[[str], None] | None = None
    """Told the complexity when modelRoutingParameters picked the model, before the model call (a
    stream can still carry it in a header)."""
    image_hosts: frozenset[str] = frozenset()
    """Hosts whose markdown images in the answer are fetched and sent as files (the client's imageHosts)."""


@dataclass
class ToolRun:
    name: str
    arguments: str
    result: str


@dataclass
class TurnResult:
    text: str
    reasoning: str
    model: str
    finish_reason: str
    usage: TokenUsage
    refusal: str = ""
    """The model declined: its explanation (`text` is then empty; the stored answer shows the refusal)."""
    client_tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_runs: list[ToolRun] = field(default_factory=list)
    new_messages: list[ChatMessage] = field(default_factory=list)
    """Assistant and tool messages the turn produced, in order (for session storage)."""
    documents: list[UsedDocument] = field(default_factory=list)
    """Knowledge documents put before the model (retrieval by injection)."""
    blocked: str | None = None
    """"input" or "output" when an AI policy blocked the turn (`text` is then the refusal)."""
    complexity: str | None = None
    """The complexity that chose the model (modelRoutingParameters), else None."""
    media: list[OutboundMedia] = field(default_factory=list)
    """Images and files tools produced for the user (sent after the text by the channels)."""


@dataclass
class PipelineServices:
    clients: ClientPool
    fetcher: RemoteFetcher
    egress: Egress
    upstreams: Upstreams
    """Where a gateway's model calls go (its own address or its LLM connection) and the egress trust."""
    meter: ConnectionMeter
    counters: TokenCounters
    usage: UsageRecorder
    settings: LLMSettings
    egress_settings: EgressSettings
    clock: Clock
    metrics: Metrics
    extensions: list[TurnExtension] = field(default_factory=list)
    stages: list[TurnStage] = field(default_factory=list)
    """Run after the extensions, in order, on the conversation (retrieval)."""
    guard: TurnGuard | None = None
    """AI policies (botline.governance): checks before and after the model call."""
    router: TurnRouter | None = None
    """modelRoutingParameters (botline.governance): the turn's model by the request's complexity."""
    screen: InputScreen | None = None
    """moderationParameters (botline.governance): a message over a threshold is withheld."""
    hook: TurnHook | None = None
    """The gateway's worker (`message.received` before the first model call, `tool.called` before each tool)."""
    budget: TurnBudget | None = None
    """Usage limits of the caller's API key and account (botline.governance): checked before the turn."""


class InputBlocked(Exception):
    """The input policy check, run beside the model call, blocked the message (before a tool ran)."""

    def __init__(self, refusal: str) -> None:
        super().__init__(refusal)
        self.refusal = refusal


class GatedSink:
    """What a guarded turn shows while its checks are pending. Text and reasoning are held until the
    input check (run beside the model call) has passed, and to the end of the turn when a block-level
    output rule is in scope (`hold_output`); a tool waits for the input check before it runs (a blocked
    message runs no tool: InputBlocked). Tool progress shows no content, so it passes once allowed."""

    def __init__(self, sink: TurnSink, check: asyncio.Task[str | None] | None, *, hold_output: bool) -> None:
        self.sink = sink
        self._check = check
        self._hold_output = hold_output
        self._open = check is None and not hold_output
        self._held: list[tuple[bool, str]] = []
        """(is reasoning, delta) in arrival order, until released."""

    async def text(self, delta: str) -> None:
        await self._pass(False, delta)

    async def reasoning(self, delta: str) -> None:
        await self._pass(True, delta)

    async def tool(self, name: str, status: ToolStatus, explanation: str | None = None) -> None:
        await self.input_passed()
        await self.sink.tool(name, status, explanation)

    async def input_passed(self) -> None:
        """Waits for the input check; raises InputBlocked when it blocked the message."""
        if self._check is not None:
            refusal = await self._check
            if refusal is not None:
                raise InputBlocked(refusal)

    async def release(self) -> None:
        """Sends what was held and lets the rest pass (the input passed; no block-level output rule)."""
        self._open = True
        held, self._held = self._held, []
        for is_reasoning, delta in held:
            await (self.sink.reasoning if is_reasoning else self.sink.text)(delta)

    async def _pass(self, is_reasoning: bool, delta: str) -> None:
        if not self._open and not self._hold_output and _passed(self._check):
            await self.release()
        if self._open:
            await (self.sink.reasoning if is_reasoning else self.sink.text)(delta)
        else:
            self._held.append((is_reasoning, delta))


def _passed(check: asyncio.Task[str | None] | None) -> bool:
    """The input check is done and let the message through."""
    return check is None or (check.done() and not check.cancelled() and check.exception() is None
                             and check.result() is None)


class TurnPipeline:
    def __init__(self, services: PipelineServices) -> None:
        self._s = services

    async def run(self, request: TurnRequest, sink: TurnSink | None = None) -> TurnResult:
        sink = sink or NullSink()
        charge = None if self._s.budget is None else await self._s.budget.admit(request.caller)
        upstream = await self._s.upstreams.of(request.gateway)
        if self._s.screen is not None and request.gateway.parameters.moderation_parameters is not None:
            request = await self._screened(request, upstream, self._s.screen)
        guarded = None if self._s.guard is None else await self._s.guard.open(
            request.gateway, request.caller, upstream)
        if guarded is None:
            return await self._answer(request, upstream, sink, charge)
        if not guarded.parallel_input:
            refusal = await guarded.check_input(request.messages)
            if refusal is not None:  # the input never reaches the model
                return self._refused(request, refusal, "input")
            return await self._guarded(request, upstream, guarded, sink, charge, None)
        check = asyncio.create_task(guarded.check_input(request.messages), name="policy-input-check")
        try:
            return await self._guarded(request, upstream, guarded, sink, charge, check)
        except InputBlocked as blocked:  # the model's answer is dropped (its tokens are recorded)
            return self._refused(request, blocked.refusal, "input")
        finally:
            if not check.done():  # the model call failed first: the turn is over
                check.cancel()

    async def _answer(self, request: TurnRequest, upstream: Upstream, sink: TurnSink,
                      charge: TurnCharge | None) -> TurnResult:
        """The model's answer, on the model the router picks when the gateway routes by complexity."""
        routed, complexity = request, None
        if self._s.router is not None and request.gateway.parameters.model_routing_parameters is not None:
            gateway, complexity = await self._s.router.route(request.gateway, request.messages, upstream)
            if complexity is not None and request.on_route is not None:
                request.on_route(complexity)
            routed = TurnRequest(**{**vars(request), "gateway": gateway})
        result = await self._complete(routed, upstream, sink)
        result.complexity = complexity
        if charge is not None:
            await charge.add(routed.gateway.parameters.model_name, result.usage)
        return result

    @staticmethod
    async def _screened(request: TurnRequest, upstream: Upstream, screen: InputScreen) -> TurnRequest:
        """The request with the latest user message withheld when moderation says so (the model is told
        why instead); the stored conversation keeps what the person wrote."""
        instruction = await screen.screen(request.gateway, request.messages, upstream)
        if instruction is None:
            return request
        index = max(i for i, m in enumerate(request.messages) if m.get("role") == "user")
        messages = [*request.messages[:index], {"role": "user", "content": WITHHELD},
                    *request.messages[index + 1:]]
        return TurnRequest(**{**vars(request), "messages": messages,
                              "instructions": [*request.instructions, instruction]})

    async def _guarded(self, request: TurnRequest, upstream: Upstream, guarded: GuardedTurn, sink: TurnSink,
                       charge: TurnCharge | None, check: asyncio.Task[str | None] | None) -> TurnResult:
        """The answer, checked before it is shown when a block-level rule is in scope (held, then sent
        or replaced by the refusal), else checked after it was shown (log/alert rules: recorded). With
        the input `check` running beside the model call, nothing shows and no tool runs before it passed."""
        held = guarded.holds_output
        gate = GatedSink(sink, check, hold_output=held)
        result = await self._answer(request, upstream, gate, charge)
        await gate.input_passed()
        if not held:  # log/alert rules only: the answer shows before its check
            await gate.release()
        refusal = await guarded.check_output(result.text)
        if refusal is not None:
            blocked = self._refused(request, refusal, "output", usage=result.usage)
            blocked.new_messages = [*result.new_messages[:-1], *blocked.new_messages]
            if held:
                await sink.text(refusal)
            return blocked
        if held:
            if result.reasoning:
                await sink.reasoning(result.reasoning)
            if result.text:
                await sink.text(result.text)
        return result

    def _refused(self, request: TurnRequest, refusal: str, phase: str,
                 usage: TokenUsage | None = None) -> TurnResult:
        return TurnResult(
            text=refusal, reasoning="", model=request.gateway.parameters.model_name, finish_reason=CONTENT_FILTER,
            usage=usage or TokenUsage(), new_messages=[{"role": "assistant", "content": refusal}], blocked=phase,
        )

    async def _complete(self, request: TurnRequest, upstream: Upstream, sink: TurnSink) -> TurnResult:
        trust = upstream.trust
        instructions: list[tuple[str, str]] = [("", block) for block in request.instructions]
        extra_tools: list[tuple[str, Tool]] = [("", tool) for tool in request.tools]
        shapers: list[tuple[str, RoundShaper]] = []
        cleanups: list[Callable[[], Awaitable[None]]] = []
        try:
            for extension in self._s.extensions:
                contribution = await extension.contribute(request.gateway, request.caller)
                group = contribution.group
                instructions += [(group, block) for block in contribution.instructions]
                extra_tools += [(group, tool) for tool in contribution.tools]
                shapers += [(group, shaper) for shaper in contribution.shapers]
                cleanups.extend(contribution.cleanups)
            return await self._prepared(request, upstream, sink, trust, instructions, extra_tools, shapers)
        finally:
            for cleanup in cleanups:
                await cleanup()

    async def _prepared(
        self, request: TurnRequest, upstream: Upstream, sink: TurnSink, trust: Trust,
        instructions: list[tuple[str, str]], extra_tools: list[tuple[str, Tool]],
        shapers: list[tuple[str, RoundShaper]],
    ) -> TurnResult:
        """The turn once the extensions have contributed: stages, context, budget, the model and its tools."""
        params = request.gateway.parameters
        for _, shaper in shapers:
            shaper.begin(request.messages)
        conversation = request.messages
        documents: list[UsedDocument] = []
        for stage in self._s.stages:
            preparation = await stage.prepare(request.gateway, request.caller, conversation)
            instructions += [("", block) for block in preparation.instructions]
            extra_tools += [("", tool) for tool in preparation.tools]
            documents.extend(preparation.documents)
            conversation = conversation if preparation.messages is None else preparation.messages
        protocol = [("", tool) for tool in await self._protocol_tools(request.gateway, trust)]
        draft = await self._draft(request, conversation, instructions, trust)
        draft.tools, draft.shapers = [*protocol, *extra_tools], shapers
        if self._s.hook is not None:
            await self._s.hook.received(request.gateway, draft)
        request = replace(request, caller=draft.caller, client_tools=draft.client_tools)
        tools = ToolSet(tool for _, tool in draft.tools)
        messages: list[ChatMessage] = [{"role": draft.system_role, "content": draft.system_text()},
                                       *draft.conversation]
        rounds = _Rounds([shaper for _, shaper in draft.shapers], tools, request.client_tools or [],
                         explain=params.tool_invocation_explanations,
                         base_system=draft.system_text())
        await rounds.reshape(messages)
        if params.context_maximum_size:
            counter = await self._s.counters.for_model(params.model_name)
            all_specs = [*tools.specs(), *(request.client_tools or [])]
            reserved = await counter.count(orjson.dumps(all_specs).decode()) if all_specs else 0
            messages = await fit_context(
                messages, maximum=params.context_maximum_size, action=params.context_overflow_action,
                counter=counter, reserved=reserved,
            )
        prefill = self._prefill(request.gateway)
        if prefill:
            messages.append({"role": "assistant", "content": prefill})
            if params.include_prefilling_in_messages:
                await sink.text(prefill)
        client = self._s.clients.model(upstream.base_address, upstream.api_key, trust)
        result = await self._loop(request, upstream, client, messages, rounds, prefill, sink)
        result.documents = documents
        result.media.extend(await fetch_answer_images(result.text, request.image_hosts, self._s.egress, trust=trust,
                                                      max_bytes=self._s.egress_settings.tool_media_max_bytes))
        return result

    async def _loop(
        self, request: TurnRequest, upstream: Upstream, client: ModelClient, messages: list[ChatMessage],
        rounds: _Rounds, prefill: str | None, sink: TurnSink,
    ) -> TurnResult:
        params = request.gateway.parameters
        tools = rounds.tools
        reasoning = ReasoningPolicy.of(params)
        usage = TokenUsage()
        thoughts: list[str] = []
        """Every round's thinking: the answer's reasoning is all of it, as the stream showed it."""
        produced: list[ChatMessage] = []
        runs: list[ToolRun] = []
        max_rounds = self._s.settings.max_tool_rounds
        for round_number in range(1, max_rounds + 1):
            if round_number > 1:
                await rounds.reshape(messages)
            offer_tools = rounds.specs() if round_number < max_rounds else []
            body = self._request_body(request, messages, offer_tools)
            if upstream.connection is not None:
                body = adapt(body, upstream.connection.ai_type)
            answer = await self._call(request, upstream, client, body, sink, reasoning)
            usage += answer.usage or TokenUsage()
            if answer.reasoning:
                thoughts.append(answer.reasoning)
            client_calls = [c for c in answer.tool_calls if c["function"]["name"] not in tools]
            if not answer.tool_calls or (client_calls and request.client_tools is not None):
                text = answer.content
                if prefill and params.include_prefilling_in_messages:
                    text = prefill + text
                final: ChatMessage = {"role": "assistant", "content": text or answer.refusal}
                if client_calls:
                    final["tool_calls"] = client_calls
                produced.append(final)
                return TurnResult(
                    text=text, reasoning="\n\n".join(thoughts), model=answer.model, finish_reason=answer.finish_reason,
                    usage=usage, refusal=answer.refusal, client_tool_calls=client_calls, tool_runs=runs,
                    new_messages=produced, media=tools.media,
                )
            assistant: ChatMessage = {"role": "assistant", "content": answer.content or None,
                                      "tool_calls": answer.tool_calls}
            if reasoning.preserved and answer.reasoning:
                assistant[REASONING_FIELD] = answer.reasoning
            messages.append(assistant)
            produced.append(assistant)
            ended: EndTurn | None = None
            attached: list[ChatMessage] = []  # a worker's messages for a tool result: after the round's results
            for call in answer.tool_calls:
                name, arguments = call["function"]["name"], call["function"]["arguments"]
                reason = None
                if rounds.explain and name in tools:
                    arguments, reason = explanations.split(arguments)
                await sink.tool(name, ToolStatus.STARTED, reason)
                try:
                    result = await self._run_tool(request, tools, name, arguments, attached) \
                        if rounds.offers(name) else no_tool(name)
                except EndTurn as end:
                    ended, result = ended or end, end.result
                await sink.tool(name, ToolStatus.FINISHED, reason)
                runs.append(ToolRun(name=name, arguments=arguments, result=result))
                tool_message: ChatMessage = {"role": "tool", "tool_call_id": call["id"], "content": result}
                messages.append(tool_message)
                produced.append(tool_message)
            if shown := tools.take_images():  # for this turn only: the stored conversation keeps the text
                attached.append(images_message(shown))
            messages.extend(attached)
            if ended is not None:  # every call of the round has its answer; the tool's text is the last word
                await sink.text(ended.answer)
                produced.append({"role": "assistant", "content": ended.answer})
                return TurnResult(
                    text=ended.answer, reasoning=answer.reasoning, model=answer.model, finish_reason="stop",
                    usage=usage, tool_runs=runs, new_messages=produced, media=tools.media,
                )
            if params.tool_context_count is not None:
                messages = apply_tool_context_count(messages, params.tool_context_count)
        raise GatewayError("The AI model kept calling tools without answering.")  # pragma: no cover

    async def _run_tool(self, request: TurnRequest, tools: ToolSet, name: str, arguments: str,
                        attached: list[ChatMessage]) -> str:
        """Runs a server-side tool, unless the worker's `tool.called` answer replaces or refuses it."""
        if self._s.hook is not None and name in tools:
            verdict = await self._s.hook.tool_called(request.gateway, request.caller, name, arguments)
            if verdict is not None:
                attached.extend(verdict.messages)
                return verdict.result
        return await tools.call(name, arguments, request.caller)

    async def _call(
        self, request: TurnRequest, upstream: Upstream, client: ModelClient, body: dict[str, Any], sink: TurnSink,
        reasoning: ReasoningPolicy,
    ) -> Round:
        gateway = request.gateway
        record = UsageRecord(
            account_id=gateway.account_id, gateway_id=gateway.id, model=gateway.parameters.model_name,
            session_id=request.caller.session_id, at=self._s.clock.now(),
        )
        started = time.perf_counter()
        try:
            kinds = reasoning.kinds
            answer = await (client.stream(body, sink, kinds) if request.stream else client.complete(body, kinds))
        except GatewayError:
            record.error = True
            self._s.usage.add(record)
            if upstream.connection is not None:
                self._s.meter.add(gateway.account_id, upstream.connection.id, ConnectionStats(api_calls=1))
            self._s.metrics.model_error(record.model)
            raise
        except asyncio.CancelledError:
            self._s.usage.add(record)
            raise
        if answer.usage is None:  # the upstream did not report usage: estimate it
            answer.usage = TokenUsage(
                prompt_tokens=sum(approximate(message_text(m)) for m in body["messages"]),
                completion_tokens=approximate(answer.content + answer.reasoning),
            )
        record.input_tokens = answer.usage.prompt_tokens
        record.output_tokens = answer.usage.completion_tokens
        self._s.usage.add(record)
        if upstream.connection is not None:
            tokens_in, tokens_out = record.input_tokens, record.output_tokens
            self._s.meter.add(gateway.account_id, upstream.connection.id, ConnectionStats(
                api_calls=1, tokens_in=tokens_in, tokens_out=tokens_out, llm_tokens_in=tokens_in,
                llm_tokens_out=tokens_out,
            ))
        self._s.metrics.model_call(
            record.model, time.perf_counter() - started, prompt_tokens=record.input_tokens,
            completion_tokens=record.output_tokens,
            first_token_seconds=None if answer.first_delta_at is None else answer.first_delta_at - started,
        )
        return answer

    def _request_body(
        self, request: TurnRequest, messages: list[ChatMessage], tool_specs: list[dict[str, Any]]
    ) -> dict[str, Any]:
        params = request.gateway.parameters
        body: dict[str, Any] = dict(request.client_parameters)
        body["model"] = params.model_name
        # a worker may clear the system instructions: then no empty system message is sent
        body["messages"] = messages[1:] if messages and messages[0].get("content") == "" else messages
        gateway_values: dict[str, Any] = {
            "temperature": None if params.has_flag(GatewayFlag.NO_TEMPERATURE) else params.temperature,
            "top_p": params.top_p,
            "presence_penalty": params.presence_penalty,
            "frequency_penalty": params.frequency_penalty,
            "stop": None if params.has_flag(GatewayFlag.NO_STOP_PARAMETER) else params.stop,
            "max_completion_tokens": params.max_completion_tokens,
            "reasoning_effort": None if params.has_flag(GatewayFlag.NO_REASONING_EFFORT) else params.reasoning_effort,
            "verbosity": params.verbosity,
        }
        body.update({key: value for key, value in gateway_values.items() if value is not None})
        if params.has_flag(GatewayFlag.NO_TEMPERATURE):
            body.pop("temperature", None)
        if params.has_flag(GatewayFlag.NO_STOP_PARAMETER):
            body.pop("stop", None)
        if params.has_flag(GatewayFlag.NO_REASONING_EFFORT):
            body.pop("reasoning_effort", None)
        if tool_specs:
            body["tools"] = tool_specs
        else:
            body.pop("tools", None)
            body.pop("tool_choice", None)
            body.pop("parallel_tool_calls", None)
        if request.caller.external_user_id and "user" not in body:
            body["user"] = request.caller.external_user_id
        return body

    async def _draft(
        self, request: TurnRequest, conversation: list[ChatMessage], instructions: list[tuple[str, str]],
        trust: Trust,
    ) -> TurnDraft:
        """The system blocks and the shaped conversation (tools and shapers are set by the caller)."""
        params = request.gateway.parameters
        blocks: list[str] = []
        if params.system_instruction:
            blocks.append(params.system_instruction)
        for source in params.system_instructions_sources:
            try:
                body = await self._s.fetcher.cached(
                    source.url, trust=trust, headers=source.headers, ttl=source.cache_duration,
                    timeout=self._s.settings.context_location_timeout_seconds,
                )
            except SourceUnavailable:
                log.warning("instruction source %s skipped", source.name)
                continue
            blocks.append(body.decode("utf-8", errors="replace"))
        if request.extra_context:
            blocks.append(request.extra_context)
        if request.context_location:
            located = await self._s.fetcher.fresh_text(
                request.context_location, trust=trust, timeout=self._s.settings.context_location_timeout_seconds
            )
            if located:
                blocks.append(located)
        system = [*(("", block) for block in blocks), *instructions,
                  ("", f"Current date and time: {_minute(self._s.clock.now())} (UTC).")]
        conversation = ModelInputs.of(params).shape(ReasoningPolicy.of(params).history(conversation))
        if params.user_prompt_template:
            conversation = apply_user_prompt_template(conversation, params.user_prompt_template)
        role = "user" if params.has_flag(GatewayFlag.NO_SYSTEM_INSTRUCT) else "system"
        return TurnDraft(system=system, system_role=role, conversation=list(conversation), tools=[],
                         client_tools=request.client_tools, shapers=[], caller=request.caller)

    @staticmethod
    def _prefill(gateway: Gateway) -> str | None:
        params = gateway.parameters
        if params.assistant_prefill and not params.has_flag(GatewayFlag.NO_ASSISTANT_PREFILLING):
            return params.assistant_prefill
        return None

    async def _protocol_tools(self, gateway: Gateway, trust: Trust) -> list[Tool]:
        params = gateway.parameters
        functions: list[ProtocolFunction] = [f for f in params.protocol_functions
                     if not any(stage.handles(f.callback_url) for stage in self._s.stages)]
        for url in params.protocol_function_sources:
            functions.extend(await self._source_functions(url, trust))
        timeout = self._s.settings.tool_call_timeout_seconds
        caps = ResponseCaps(text=self._s.egress_settings.tool_response_max_bytes,
                            media=self._s.egress_settings.tool_media_max_bytes)
        return [
            ProtocolFunctionTool(f, self._s.egress, trust=trust, timeout=timeout, caps=caps)
            for f in functions
        ]

    async def _source_functions(self, url: str, trust: Trust) -> list[ProtocolFunction]:
        """A protocol function source: GET url -> {"functions": [...]}, cached; failure fails the turn
        with a message that names no URL (the person chatting may see it; the log has the URL)."""
        body = await self._s.fetcher.cached(
            url, trust=trust, headers={}, ttl=self._s.settings.function_sources_cache_seconds,
            timeout=self._s.settings.tool_call_timeout_seconds,
        )
        try:
            listed = orjson.loads(body)["functions"]
            return [ProtocolFunction.model_validate(item) for item in listed]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("function source %s did not return a valid function list", loggable_url(url))
            raise SourceUnavailable(SOURCE_UNAVAILABLE) from exc


class _Rounds:
    """What changes from one model round to the next within a turn: the system message (blocks the
    shapers add, e.g. skills just read) and the tools offered."""

    def __init__(self, shapers: Sequence[RoundShaper], tools: ToolSet, client_tools: list[dict[str, Any]], *,
                 base_system: str, explain: bool = False) -> None:
        self._shapers = shapers
        self.tools = tools
        self._client_tools = client_tools
        self.explain = explain
        """toolInvocationExplanations: server-side tools ask for a reason (a /v1 caller's own never do)."""
        self._base_system = base_system

    def offers(self, name: str) -> bool:
        return all(shaper.offers(name) for shaper in self._shapers)

    def specs(self) -> list[dict[str, Any]]:
        server = self.tools.specs(self.offers)
        if self.explain:
            server = [explanations.with_explanation(spec) for spec in server]
        return [*server, *self._client_tools]

    async def reshape(self, messages: list[ChatMessage]) -> None:
        """Rewrites the system message (always first) with the shapers' current blocks."""
        if not self._shapers:
            return
        blocks = [block for shaper in self._shapers for block in await shaper.system_blocks()]
        messages[0] = {**messages[0], "content": "\n\n".join(b for b in [self._base_system, *blocks] if b)}


def _minute(moment: datetime) -> str:
    return moment.replace(second=0, microsecond=0).isoformat()
