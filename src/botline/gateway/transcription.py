"""Speech to text through the gateway's OpenAI-compatible /audio/transcriptions."""

from __future__ import annotations

import logging

import openai

from botline.domain.chat_clients import ChatClient
from botline.gateway.connections import Upstreams
from botline.gateway.errors import GatewayError
from botline.gateway.llm import ClientPool
from botline.store.base import Store

log = logging.getLogger(__name__)


class Transcriber:
    def __init__(self, store: Store, clients: ClientPool, *, model: str,
                 upstreams: Upstreams) -> None:
        self._store = store
        self._clients = clients
        self._model = model
        self._upstreams = upstreams

    async def transcribe(self, client: ChatClient, audio: bytes, filename: str) -> str | None:
        """The transcript, or None when the gateway cannot transcribe (logged; callers fall back to a note)."""
        if not client.ai_gateway_id:
            return None
        gateway = await self._store.gateways.get(client.account_id, client.ai_gateway_id)
        if gateway is None:
            return None
        try:
            target = await self._upstreams.of(gateway)
        except GatewayError as exc:
            log.warning("transcription impossible at gateway %s: %s", gateway.id, exc.message)
            return None
        upstream = self._clients.get(target.base_address, target.api_key, target.trust)
        try:
            result = await upstream.audio.transcriptions.create(model=self._model, file=(filename, audio))
        except openai.OpenAIError as exc:
            log.warning("transcription failed at gateway %s: %s", gateway.id, type(exc).__name__)
            return None
        return result.text.strip() or None
