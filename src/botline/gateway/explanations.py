"""`toolInvocationExplanations`: the model gives a one-line reason with each server-side tool call.

Each offered tool's parameters gain a required string `invocation_explanation`; the pipeline takes it out
of the arguments before the tool runs (a tool never sees it, so strict schemas still pass) and shows it
with the tool activity (the web chat's tool events). A tool whose schema already has a property of that
name, or is not an object schema, is offered unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from botline.gateway.tools import ToolSpec

FIELD = "invocation_explanation"
MAX_CHARS = 200
"""An explanation is one line: longer text is cut."""
DESCRIPTION = "One short sentence, for the person you are helping: why you are calling this tool now."


def with_explanation(spec: ToolSpec) -> ToolSpec:
    parameters = spec.get("function", {}).get("parameters")
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        return spec
    properties = parameters.get("properties") or {}
    if not isinstance(properties, dict) or FIELD in properties:
        return spec
    extended = copy.copy(spec)
    required = parameters.get("required")
    extended["function"] = {**spec["function"], "parameters": {
        **parameters,
        "properties": {FIELD: {"type": "string", "description": DESCRIPTION}, **properties},
        "required": [FIELD, *(required if isinstance(required, list) else [])],
    }}
    return extended


def split(arguments: str) -> tuple[str, str | None]:
    """(the arguments without the explanation, the explanation as one line) for a call's JSON text."""
    try:
        parsed: Any = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return arguments, None
    if not isinstance(parsed, dict) or FIELD not in parsed:
        return arguments, None
    reason = parsed.pop(FIELD)
    line = " ".join(reason.split())[:MAX_CHARS] if isinstance(reason, str) else ""
    return orjson.dumps(parsed).decode(), line or None
