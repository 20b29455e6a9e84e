"""The seam through which governance checks a turn: before the model call (the input) and after it
(the output). The pipeline knows only these protocols; botline.governance implements them."""

from __future__ import annotations

from typing import Protocol

from botline.domain.conversations import TokenUsage
from botline.domain.gateways import Gateway
from botline.gateway.caller import Caller
from botline.gateway.connections import Upstream
from botline.gateway.context import ChatMessage

CONTENT_FILTER = "content_filter"
"""The finish reason of a turn a policy blocked (OpenAI's and Azure's name for filtered content)."""


class GuardedTurn(Protocol):
    @property
    def holds_output(self) -> bool:
        """True when the answer must not reach the person before `check_output` (a block-level rule)."""

    @property
    def parallel_input(self) -> bool:
        """True: `check_input` runs beside the model call, whose answer is held (no text, no tool run)
        until the check is done; False: the check runs first and a blocked message never reaches the model."""

    async def check_input(self, messages: list[ChatMessage]) -> str | None:
        """The refusal to answer with when the input is blocked; None to go on."""

    async def check_output(self, text: str) -> str | None:
        """The refusal to show instead of `text` when the output is blocked; None to show it."""


class TurnGuard(Protocol):
    async def open(self, gateway: Gateway, caller: Caller, upstream: Upstream) -> GuardedTurn | None:
        """The checks of one turn; None when nothing applies (no judge call, nothing held)."""


class TurnCharge(Protocol):
    async def add(self, model: str, usage: TokenUsage) -> None:
        """Counts an admitted turn's model usage against its limits."""


class TurnBudget(Protocol):
    async def admit(self, caller: Caller) -> TurnCharge | None:
        """Raises a GatewayError (429 or 402) when a usage limit of the caller's key or account is
        reached; None when no limit applies (nothing to count)."""


class TurnRouter(Protocol):
    async def route(
        self, gateway: Gateway, messages: list[ChatMessage], upstream: Upstream,
    ) -> tuple[Gateway, str | None]:
        """The gateway as this turn should use it (its model and reasoning effort chosen by the
        complexity of the latest request) and the complexity ("low", "medium", "high"; None: not routed)."""


class InputScreen(Protocol):
    async def screen(self, gateway: Gateway, messages: list[ChatMessage], upstream: Upstream) -> str | None:
        """None to forward the conversation; else an instruction for the model: the latest user message is
        withheld (not forwarded) and the model is told to say it cannot engage (moderationParameters)."""
