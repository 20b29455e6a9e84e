"""Pooled model clients: the openai SDK's and botline's lean one, per upstream and trust.

One AsyncOpenAI per (baseAddress, apiKey, egress trust), on the SDK's aiohttp transport routed through
the egress pools, and one LeanModelClient likewise: neither holds sockets of its own (the egress pools
do), so the least recently used are simply dropped past `MAX_CLIENTS`. Both retry with exponential
backoff and jitter on 408/409/429/5xx and connection errors, Retry-After honoured up to 120 s
(gateway/retries.py); errors are mapped to UpstreamError by gateway/upstream.py.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import openai

from botline.config import LLMSettings
from botline.egress import Egress, Trust
from botline.egress.sdk_transport import EgressTransport
from botline.gateway.completion import SdkModelClient
from botline.gateway.lean_client import LeanModelClient
from botline.gateway.model_client import ModelClient
from botline.gateway.upstream import PLACEHOLDER_KEY

MAX_CLIENTS = 512
"""Clients kept; repeated edits and /validate calls with new addresses cannot grow the pool past it."""


class ClientPool:
    """Hands out one shared AsyncOpenAI per upstream and trust (`get`: validation, transcription), and a
    turn's model client (`model`: the lean client unless the config sends this upstream to the SDK)."""

    def __init__(self, settings: LLMSettings, egress: Egress, *, max_response_bytes: int,
                 capacity: int = MAX_CLIENTS) -> None:
        self._settings = settings
        self._capacity = capacity
        self._egress = egress
        self._max_response_bytes = max_response_bytes
        self._clients: OrderedDict[str, openai.AsyncOpenAI] = OrderedDict()
        self._lean: OrderedDict[str, ModelClient] = OrderedDict()
        self._sdk_bases = {address.rstrip("/") for address in settings.sdk_base_addresses}

    def __len__(self) -> int:
        return len(self._clients)

    def model(self, base_address: str, api_key: str | None, trust: Trust) -> ModelClient:
        """The client of a turn's `/chat/completions` call (the switch: `llm.client`, `llm.sdk_base_addresses`)."""
        if self._settings.client == "sdk" or base_address.rstrip("/") in self._sdk_bases:
            return SdkModelClient(self.get(base_address, api_key, trust))
        pool_key = _pool_key(base_address, api_key, trust)
        client = self._lean.get(pool_key)
        if client is not None:
            self._lean.move_to_end(pool_key)
            return client
        client = self._lean[pool_key] = LeanModelClient(
            self._egress, trust, base_address=base_address, api_key=api_key, settings=self._settings,
            max_response_bytes=self._max_response_bytes,
        )
        while len(self._lean) > self._capacity:
            self._lean.popitem(last=False)
        return client

    def get(self, base_address: str, api_key: str | None, trust: Trust) -> openai.AsyncOpenAI:
        pool_key = _pool_key(base_address, api_key, trust)
        client = self._clients.get(pool_key)
        if client is not None:
            self._clients.move_to_end(pool_key)
            return client
        timeout = openai.Timeout(self._settings.request_timeout_seconds, connect=self._settings.connect_timeout_seconds)
        transport = EgressTransport(self._egress, trust, max_response_bytes=self._max_response_bytes)
        client = openai.AsyncOpenAI(
            base_url=base_address,
            api_key=api_key or PLACEHOLDER_KEY,
            max_retries=self._settings.max_retries,
            timeout=timeout,
            http_client=openai.DefaultAioHttpClient(timeout=timeout, transport=transport),
        )
        self._clients[pool_key] = client
        while len(self._clients) > self._capacity:
            self._clients.popitem(last=False)  # no sockets of its own: the egress pools hold them
        return client


def _pool_key(base_address: str, api_key: str | None, trust: Trust) -> str:
    return hashlib.sha256(f"{base_address}\0{api_key or ''}\0{trust}".encode()).hexdigest()
