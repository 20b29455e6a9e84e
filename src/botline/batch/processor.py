"""One item through the workflow's gateway: the normal turn pipeline (its instructions, tools and
accounting apply), a result that must validate, bounded retries, an optional judge call.

Outcomes: Finished (output valid, judge passed); ValidationError (invalid after `maxRetries` further
attempts, or the judge failed it); Refused (the model refused, or its output was filtered);
ExecutionError (the gateway is gone, or the upstream kept failing after `maxRetries` retries with
backoff). Every non-Finished outcome carries `validationResult {passed: false, reason}` saying why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from botline.batch import output, tools
from botline.config import BatchSettings
from botline.domain import json_schema
from botline.domain.batch import BatchItem, BatchJob, ItemResult, ItemState, ValidationResult, Workflow
from botline.domain.clock import Clock
from botline.domain.gateways import Gateway
from botline.gateway.caller import Caller, CallSource
from botline.gateway.context import ChatMessage
from botline.gateway.errors import GatewayError, UpstreamError
from botline.gateway.pipeline import TurnPipeline, TurnRequest, TurnResult

log = logging.getLogger(__name__)

GatewayFinder = Callable[[str, str], Awaitable[Gateway | None]]
"""(account id, gateway id or slug) -> the gateway (GatewayCache.find)."""
Sleep = Callable[[float], Awaitable[None]]
FILTERED = "content_filter"
INVALID_OUTPUT_KEPT = 64 * 1024
"""Characters of an answer that failed validation kept as the item's output (to see what went wrong)."""


@dataclass
class _Attempts:
    """What one item's run has spent and tried so far."""

    cost: float = 0.0
    upstream_failures: int = 0
    invalid_answers: int = 0
    messages: list[ChatMessage] = field(default_factory=list)


class ItemProcessor:
    def __init__(
        self, pipeline: TurnPipeline, find_gateway: GatewayFinder, clock: Clock, settings: BatchSettings,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._pipeline = pipeline
        self._find_gateway = find_gateway
        self._clock = clock
        self._settings = settings
        self._sleep = sleep

    async def process(self, job: BatchJob, workflow: Workflow, item: BatchItem) -> ItemResult:
        found = await self._find_gateway(job.account_id, workflow.model_name)
        if found is None:
            return self._failed(ItemState.EXECUTION_ERROR, f"No AI gateway {workflow.model_name!r} in this account.", 0)
        gateway = tools.for_items(found, workflow.options.enabled_tools)
        schema = workflow.options.result_schema
        validator = json_schema.validator_for(schema)
        parameters: dict[str, object] = {}
        if output.structured(gateway.parameters):
            parameters["response_format"] = output.response_format(
                gateway.parameters, output.SCHEMA_NAME, output.envelope(schema))
        if workflow.reasoning_effort:
            parameters["reasoning_effort"] = workflow.reasoning_effort
        instruction = output.task_instruction(workflow.options.instruction, schema)
        spent = _Attempts(messages=[{"role": "user", "content": item.input}])
        caller = Caller(call_source=CallSource.BATCH, account_id=job.account_id, external_user_id=f"batch:{job.id}")
        while True:
            answer = await self._turn(gateway, workflow, spent, caller, [instruction], parameters)
            if isinstance(answer, ItemResult):
                return answer
            if answer.refusal or answer.finish_reason == FILTERED:
                reason = answer.refusal or "The model's answer was filtered."
                return self._failed(ItemState.REFUSED, reason, spent.cost, output_text=answer.refusal or None)
            try:
                parsed = output.parse_output(answer.text, validator)
            except output.InvalidOutput as exc:
                spent.invalid_answers += 1
                if spent.invalid_answers > workflow.max_retries:
                    return self._failed(ItemState.VALIDATION_ERROR, str(exc), spent.cost, output_text=answer.text)
                spent.messages += [{"role": "assistant", "content": answer.text},
                                   {"role": "user", "content": output.retry_prompt(str(exc))}]
                continue
            text = orjson.dumps(parsed.result).decode()
            if not workflow.options.validation_instruction:
                return ItemResult(state=ItemState.FINISHED, processed_at=self._clock.now(), output=text,
                                  confidence=parsed.confidence, cost=spent.cost)
            return await self._judge(gateway, workflow, item, text, parsed.confidence, spent, caller)

    async def _turn(
        self, gateway: Gateway, workflow: Workflow, spent: _Attempts, caller: Caller, instructions: list[str],
        parameters: dict[str, object], messages: list[ChatMessage] | None = None,
    ) -> TurnResult | ItemResult:
        """One pipeline turn, retried with backoff on upstream errors; an ExecutionError result once
        `maxRetries` retries failed too."""
        while True:
            request = TurnRequest(gateway=gateway, messages=list(messages or spent.messages), caller=caller,
                                  instructions=instructions, client_parameters=dict(parameters))
            try:
                result = await self._pipeline.run(request)
            except UpstreamError as exc:
                spent.upstream_failures += 1
                if spent.upstream_failures > workflow.max_retries:
                    return self._failed(ItemState.EXECUTION_ERROR, exc.message, spent.cost)
                await self._sleep(output.backoff_seconds(
                    spent.upstream_failures, exc.retry_after, base=self._settings.retry_base_seconds,
                    cap=self._settings.retry_max_seconds))
                continue
            except GatewayError as exc:
                return self._failed(ItemState.EXECUTION_ERROR, exc.message, spent.cost)
            spent.cost += output.cost(result.usage, self._settings.prices.get(gateway.parameters.model_name))
            return result

    async def _judge(
        self, gateway: Gateway, workflow: Workflow, item: BatchItem, text: str, confidence: float | None,
        spent: _Attempts, caller: Caller,
    ) -> ItemResult:
        """The second call: the model judges the output against validationInstruction."""
        instruction = workflow.options.validation_instruction or ""
        parameters: dict[str, object] = {}
        if output.structured(gateway.parameters):
            parameters["response_format"] = output.response_format(
                gateway.parameters, output.VERDICT_NAME, output.VERDICT_SCHEMA)
        messages: list[ChatMessage] = [{"role": "user", "content": output.judge_prompt(item.input, text)}]
        answer = await self._turn(gateway, workflow, spent, caller, [output.judge_instruction(instruction)],
                                  parameters, messages)
        if isinstance(answer, ItemResult):
            return answer
        try:
            passed, reason = output.parse_verdict(answer.text)
        except output.InvalidOutput as exc:
            return self._failed(ItemState.VALIDATION_ERROR, str(exc), spent.cost, output_text=text)
        verdict = ValidationResult(passed=passed, reason=reason)
        return ItemResult(state=ItemState.FINISHED if passed else ItemState.VALIDATION_ERROR,
                          processed_at=self._clock.now(), output=text, validation_result=verdict,
                          confidence=confidence, cost=spent.cost)

    def _failed(self, state: ItemState, reason: str, cost: float, *, output_text: str | None = None) -> ItemResult:
        kept = None if output_text is None else output_text[:INVALID_OUTPUT_KEPT]
        return ItemResult(state=state, processed_at=self._clock.now(), output=kept, cost=cost,
                          validation_result=ValidationResult(passed=False, reason=reason[:output.REASON_MAX]))
