"""What a gateway's reasoning flags do with a reasoning model's thinking (docs/decisions.md, "Reasoning").

- `ThinkingProcess` or `ReturnReasoningTokens`: the thinking is shown (the web chat's "thinking" block,
  `reasoning_content` on /v1, `reasoning` in the public chat's answer). Neither: it is read and dropped.
  Telegram and WhatsApp never get it.
- `DisableReasoningDetails`: the full thinking text (`reasoning_content`, `reasoning`, and
  `reasoning_details` entries of type `reasoning.text`) is not kept. `DisableReasoningSummary`: the
  summaries (`reasoning_details` entries of type `reasoning.summary`) are not kept.
- `PreserveThinkingTokens`: within a turn's tool loop, each round's thinking goes back to the model on its
  assistant message (`reasoning_content`), as providers that think between tool calls need; and the
  thinking is stored with the answer.
- `IncludeStoredReasoning`: the thinking is stored with the answer and earlier answers' thinking goes
  back to the model in later turns. Without it, `reasoning_content` on history messages (stored, or a /v1
  caller's own) is removed before the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botline.domain.gateways import GatewayFlag, GatewayParameters
from botline.gateway.context import ChatMessage

REASONING_FIELD = "reasoning_content"
"""Where OpenAI-compatible clients (DeepSeek's API, vLLM, the openai SDK's extra fields) read thinking."""
SUMMARY_ENTRY = "reasoning.summary"
TEXT_ENTRY = "reasoning.text"


@dataclass(frozen=True)
class ReasoningKinds:
    """Which kinds of thinking are read from the upstream's answer."""

    details: bool = True
    summaries: bool = True

    def text_of(self, holder: dict[str, Any]) -> str:
        """The thinking in a message or a stream delta. OpenRouter sends `reasoning_details` (typed
        entries) beside a flat `reasoning` that repeats them: when the typed entries are there they win,
        so nothing is counted twice."""
        entries = holder.get("reasoning_details")
        if isinstance(entries, list) and entries:
            return "".join(self._entry_text(entry) for entry in entries if isinstance(entry, dict))
        if not self.details:
            return ""
        value = holder.get(REASONING_FIELD) or holder.get("reasoning")
        return value if isinstance(value, str) else ""

    def _entry_text(self, entry: dict[str, Any]) -> str:
        kind = entry.get("type")
        if kind == SUMMARY_ENTRY and self.summaries:
            value = entry.get("summary")
        elif kind == TEXT_ENTRY and self.details:
            value = entry.get("text")
        else:  # encrypted entries, or a kind the flags leave out
            return ""
        return value if isinstance(value, str) else ""


ALL_KINDS = ReasoningKinds()


@dataclass(frozen=True)
class ReasoningPolicy:
    shown: bool = False
    kinds: ReasoningKinds = ALL_KINDS
    preserved: bool = False
    """Sent back to the model within the turn's tool loop."""
    resent: bool = False
    """Earlier answers' stored thinking sent back to the model."""

    @property
    def stored(self) -> bool:
        return self.preserved or self.resent

    @classmethod
    def of(cls, params: GatewayParameters) -> ReasoningPolicy:
        flags = frozenset(params.flags)
        return cls(
            shown=bool(flags & {GatewayFlag.THINKING_PROCESS, GatewayFlag.RETURN_REASONING_TOKENS}),
            kinds=ReasoningKinds(
                details=GatewayFlag.DISABLE_REASONING_DETAILS not in flags,
                summaries=GatewayFlag.DISABLE_REASONING_SUMMARY not in flags,
            ),
            preserved=GatewayFlag.PRESERVE_THINKING_TOKENS in flags,
            resent=GatewayFlag.INCLUDE_STORED_REASONING in flags,
        )

    def history(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """The conversation as the model gets it: earlier thinking kept only with IncludeStoredReasoning."""
        if self.resent or not any(REASONING_FIELD in message for message in messages):
            return messages
        return [_without_reasoning(message) for message in messages]


def _without_reasoning(message: ChatMessage) -> ChatMessage:
    if REASONING_FIELD not in message:
        return message
    return {key: value for key, value in message.items() if key != REASONING_FIELD}
