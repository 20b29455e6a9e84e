"""Moderation (AIVAX `moderationParameters`): the latest user message is scored by an OpenAI-compatible
`POST /moderations` (through the openai SDK, at the gateway's upstream); a category whose score passes
its threshold withholds the message: it is not forwarded, and the model is asked to answer that it
cannot engage with it (AIVAX's behaviour).

Trips when `score × 100 > threshold`. A threshold of 0 (the default) or less leaves its category off,
and `moderationParameters: null` turns moderation off; over 100 never trips. docs/governance.md.
"""

from __future__ import annotations

import logging

import openai

from botline.config import GovernanceSettings
from botline.domain.gateways import Gateway, ModerationParameters
from botline.gateway.connections import Upstream
from botline.gateway.context import ChatMessage
from botline.gateway.llm import ClientPool
from botline.gateway.tokens import message_text
from botline.metrics import Metrics

log = logging.getLogger(__name__)
CHECKED_CHARS = 32_000
SCORES = {
    "violence_threshold": ("violence", "violence/graphic", "hate", "hate/threatening", "harassment/threatening"),
    "sexual_explicit_threshold": ("sexual", "sexual/minors"),
    "political_threshold": ("political",),
    "dangerous_content_threshold": ("illicit", "illicit/violent", "self-harm", "self-harm/intent",
                                    "self-harm/instructions"),
    "jailbreak_threshold": ("jailbreak", "prompt_injection"),
}
"""Each AIVAX threshold and the moderation categories whose highest score it is compared with. OpenAI's
omni-moderation scores no political content nor jailbreaks: those two apply only with a moderation
server that reports such a category."""
INSTRUCTION = ("The user's last message was withheld by content moderation ({categories}). Do not guess "
               "what it said. Answer briefly, in the user's language if known, that you cannot engage "
               "with that content.")


class Moderator:
    """The pipeline's InputScreen (gateway/guards.py)."""

    def __init__(self, clients: ClientPool, settings: GovernanceSettings, *, metrics: Metrics) -> None:
        self._clients = clients
        self._settings = settings
        self._metrics = metrics

    async def screen(self, gateway: Gateway, messages: list[ChatMessage], upstream: Upstream) -> str | None:
        limits = gateway.parameters.moderation_parameters
        latest = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        text = "" if latest is None else message_text(latest)[-CHECKED_CHARS:]
        if limits is None or not _active(limits) or not text.strip():
            return None
        client = self._clients.get(upstream.base_address, upstream.api_key, upstream.trust)
        try:
            answer = await client.moderations.create(model=self._settings.moderation_model, input=text)
            scores = answer.results[0].category_scores.model_dump(by_alias=True)
        except (openai.OpenAIError, IndexError) as exc:
            log.warning("moderation failed at gateway %s (%s): the message goes on unchecked", gateway.id,
                        type(exc).__name__)
            self._metrics.moderation_checks("failed").inc()
            return None
        tripped = _tripped(limits, scores)
        self._metrics.moderation_checks("withheld" if tripped else "passed").inc()
        if not tripped:
            return None
        log.info("moderation withheld a message at gateway %s: %s", gateway.id, ", ".join(tripped))
        return INSTRUCTION.format(categories=", ".join(tripped))


def _active(limits: ModerationParameters) -> bool:
    return any(getattr(limits, field) > 0 for field in SCORES)


def _tripped(limits: ModerationParameters, scores: dict[str, object]) -> list[str]:
    """The AIVAX categories over their thresholds (camelCase names), in SCORES order."""
    tripped = []
    for field, categories in SCORES.items():
        threshold = getattr(limits, field)
        found = [float(value) for name in categories if isinstance(value := scores.get(name), int | float)]
        if threshold > 0 and found and max(found) * 100 > threshold:
            tripped.append(field.removesuffix("_threshold"))
    return tripped
