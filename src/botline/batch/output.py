"""How an item's answer is asked for and read: the result envelope, structured output, parsing, costs.

The model answers `{"result": <the workflow's resultSchema>, "confidence": <0..1>}`: `result` is the
item's output, `confidence` the model's own estimate (docs/batch.md: a self-report; botline does not
request logprobs, which many OpenAI-compatible upstreams do not return). An answer that is the bare
result (no envelope) is accepted too, without a confidence.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema.protocols import Validator

from botline.config import ModelPrice
from botline.domain.conversations import TokenUsage
from botline.domain.gateways import GatewayFlag, GatewayParameters

SCHEMA_NAME = "batch_result"
VERDICT_NAME = "batch_verdict"
REASON_MAX = 1000
"""Characters of a validation reason kept on the item."""
FENCE = "```"
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"passed": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["passed", "reason"], "additionalProperties": False,
}


class InvalidOutput(ValueError):
    """The answer is not JSON, or does not validate against the result schema; the text says why."""


@dataclass(frozen=True)
class Parsed:
    result: Any
    confidence: float | None


def envelope(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"result": schema, "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
        "required": ["result", "confidence"], "additionalProperties": False,
    }


def structured(parameters: GatewayParameters) -> bool:
    """Whether the gateway's upstream takes `response_format: json_schema` (its flags say so)."""
    return parameters.has_flag(GatewayFlag.STRUCTURED_OUTPUT_SUPPORT) or parameters.has_flag(
        GatewayFlag.OPEN_AI_STRICT_JSON)


def response_format(parameters: GatewayParameters, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI `response_format` asking for `schema` (strict with the OpenAiStrictJson flag)."""
    strict = parameters.has_flag(GatewayFlag.OPEN_AI_STRICT_JSON)
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}}


def task_instruction(instruction: str, schema: dict[str, Any]) -> str:
    """The system block of an item's turn: the workflow's instruction and the answer's exact shape."""
    return (
        f"{instruction}\n\nThe user message is one input to process. Answer with a single JSON object and "
        "nothing else, of this JSON Schema:\n"
        f"{orjson.dumps(envelope(schema)).decode()}\n"
        "`result` is your result for the input; `confidence` (0 to 1) is how sure you are of it."
    )


def retry_prompt(reason: str) -> str:
    return (f"That answer was not valid: {reason}. Answer again with only the JSON object, "
            "`result` matching the schema.")


def judge_instruction(validation_instruction: str) -> str:
    return (
        "You check the output of an automated task. Criteria:\n"
        f"{validation_instruction}\n\nThe user message holds the task's input and its output. Answer with a single "
        f"JSON object and nothing else, of this JSON Schema: {orjson.dumps(VERDICT_SCHEMA).decode()}"
    )


def judge_prompt(item_input: str, output: str) -> str:
    return f"Input:\n{item_input}\n\nOutput:\n{output}"


def _unfenced(text: str) -> str:
    """The answer without a Markdown code fence around it (```json ... ```), as models often add."""
    body = text.strip()
    if body.startswith(FENCE) and body.endswith(FENCE) and len(body) >= 2 * len(FENCE):
        body = body[len(FENCE):-len(FENCE)]
        first, newline, rest = body.partition("\n")
        if newline and first.strip().isalnum():  # the fence's language tag
            body = rest
    return body.strip()


def _json(text: str) -> Any:
    try:
        return orjson.loads(_unfenced(text))
    except orjson.JSONDecodeError as exc:
        raise InvalidOutput(f"the answer is not JSON ({exc})") from None


def parse_output(text: str, validator: Validator) -> Parsed:
    """The result and confidence of an answer; InvalidOutput naming the first schema miss."""
    data = _json(text)
    if isinstance(data, dict) and "result" in data and set(data) <= {"result", "confidence"}:
        result, confidence = data["result"], _confidence(data.get("confidence"))
    else:
        result, confidence = data, None
    error = next(iter(validator.iter_errors(result)), None)
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path)
        raise InvalidOutput(f"the result does not match the schema{f' at {where}' if where else ''}: "
                            f"{error.message[:REASON_MAX]}")
    return Parsed(result=result, confidence=confidence)


def _confidence(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return min(1.0, max(0.0, float(value)))


def parse_verdict(text: str) -> tuple[bool, str | None]:
    """The judge's (passed, reason); InvalidOutput when it is not a verdict."""
    data = _json(text)
    if not isinstance(data, dict) or not isinstance(data.get("passed"), bool):
        raise InvalidOutput("the validator's answer is not a {passed, reason} object")
    reason = data.get("reason")
    return data["passed"], str(reason)[:REASON_MAX] if reason is not None else None


def cost(usage: TokenUsage, price: ModelPrice | None) -> float:
    """The price of one call's usage; 0 for a model the operator gave no price."""
    if price is None:
        return 0.0
    return (usage.prompt_tokens * price.input_per_million + usage.completion_tokens * price.output_per_million) / 1e6


def backoff_seconds(attempt: int, retry_after: float | None, *, base: float, cap: float) -> float:
    """The wait before retry number `attempt` (1-based): Retry-After when the upstream gave one (capped),
    else exponential from `base` with full jitter."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))  # jitter, not a secret
