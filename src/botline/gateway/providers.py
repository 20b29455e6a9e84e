"""Each provider's OpenAI-compatible endpoint, and the request changes its quirks need.

Applied to the body of a model call made through an LLM connection of that type (a gateway with its
own baseAddress is sent as it is: the operator chose every parameter). Sources: Anthropic's "OpenAI
SDK compatibility" page (temperature 0-1, whitespace-only stop sequences do not work)
and Google's "OpenAI compatibility" page (at most 5 stop sequences). Tested against the fake LLM
only (tests/governance/test_providers.py): docs/governance.md says so.
"""

from __future__ import annotations

from typing import Any

from botline.domain.llm_connections import AiType

ANTHROPIC_MAX_TEMPERATURE = 1.0
GOOGLE_MAX_STOP_SEQUENCES = 5


def adapt(body: dict[str, Any], ai_type: AiType) -> dict[str, Any]:
    """The body with `ai_type`'s quirks applied (a new dict; `body` is left as it was)."""
    if ai_type is AiType.ANTHROPIC:
        return _anthropic(body)
    if ai_type is AiType.GOOGLE:
        return _google(body)
    return body


def _stops(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _anthropic(body: dict[str, Any]) -> dict[str, Any]:
    adapted = dict(body)
    temperature = adapted.get("temperature")
    if isinstance(temperature, int | float) and temperature > ANTHROPIC_MAX_TEMPERATURE:
        adapted["temperature"] = ANTHROPIC_MAX_TEMPERATURE
    if "stop" in adapted:
        stops = [stop for stop in _stops(adapted.pop("stop")) if stop.strip()]
        if stops:
            adapted["stop"] = stops
    return adapted


def _google(body: dict[str, Any]) -> dict[str, Any]:
    adapted = dict(body)
    if "stop" in adapted:
        stops = _stops(adapted.pop("stop"))[:GOOGLE_MAX_STOP_SEQUENCES]
        if stops:
            adapted["stop"] = stops
    return adapted
