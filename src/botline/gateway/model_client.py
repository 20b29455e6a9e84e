"""The model call of a turn (`/chat/completions`, streamed or not), behind one small interface.

Two implementations answer it the same way (tests/gateway/test_model_clients.py runs one conformance
suite against both): `LeanModelClient` (gateway/lean_client.py), botline's own aiohttp client and the
default, and `SdkModelClient` (gateway/completion.py), the openai SDK's, kept as the fallback for an
upstream with a quirk only the SDK copes with (`llm.client`, `llm.sdk_base_addresses`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from botline.gateway.reasoning import ALL_KINDS, ReasoningKinds
from botline.gateway.rounds import DeltaSink, Round


class ModelClient(ABC):
    """Raises UpstreamError (gateway/llm.py has the texts) when the model cannot answer, after retries."""

    @abstractmethod
    async def complete(self, request: dict[str, Any], kinds: ReasoningKinds = ALL_KINDS) -> Round:
        """A non-streaming call with the already-shaped body `request`; `kinds`: the thinking kept."""

    @abstractmethod
    async def stream(self, request: dict[str, Any], sink: DeltaSink, kinds: ReasoningKinds = ALL_KINDS) -> Round:
        """A streaming call (usage asked for): text and reasoning go to `sink` as they arrive. Cancelling
        the awaiting task closes the upstream request, so the provider stops generating."""
