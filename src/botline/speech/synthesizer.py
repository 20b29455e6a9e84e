"""Speech through an OpenAI-compatible POST /audio/speech, with the openai SDK (over the egress layer).

`audioSynthesisSource` names a configured source (`speech.sources`): its model, and either its own
endpoint (`base_url`, `api_key`: the operator's) or the chat client's gateway upstream, as
transcription uses. Voice and instruction come from the client. The answer is made speakable
(speech/text.py), shortened by a cheap model call when the client asks for it, and the audio is passed
on chunk by chunk as the endpoint sends it (speech/cache.py), up to `speech.max_audio_bytes`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from enum import StrEnum

import openai

from botline.config import SpeechSettings, SpeechSourceSettings
from botline.domain.chat_clients import ChatClient
from botline.domain.clock import Clock
from botline.domain.gateways import Gateway
from botline.domain.usage import UsageRecord
from botline.egress import Trust
from botline.gateway.accounting import UsageRecorder
from botline.gateway.connections import Upstream, Upstreams
from botline.gateway.errors import GatewayError
from botline.gateway.llm import ClientPool
from botline.gateway.tokens import approximate
from botline.metrics import Metrics, SpeechOutcome
from botline.speech.cache import AudioCache, AudioFlight
from botline.speech.text import SUMMARY_PROMPT, cut_at_sentence, spoken_text
from botline.store.base import Store

log = logging.getLogger(__name__)

SUMMARY_WORDS = 80
SUMMARY_MAX_TOKENS = 400


class AudioFormat(StrEnum):
    """What is asked of the endpoint: MP3 plays in every browser; Opus (in Ogg) is a voice note on
    Telegram and WhatsApp."""

    MP3 = "mp3"
    OPUS = "opus"


OGG_MAGIC = b"OggS"
WAV_MAGIC = b"RIFF"


def content_type_of(first_bytes: bytes) -> str:
    """What the audio is, from its first bytes: an endpoint asked for one format may answer another (a
    server ignoring response_format), and the web player and the channels must say what it really is.
    Anything not Ogg or WAV is taken for MP3 (OpenAI's default format)."""
    if first_bytes.startswith(OGG_MAGIC):
        return "audio/ogg"
    if first_bytes.startswith(WAV_MAGIC):
        return "audio/wav"
    return "audio/mpeg"


@dataclass(frozen=True)
class SpeechAudio:
    data: bytes

    @property
    def content_type(self) -> str:
        return content_type_of(self.data[:4])


class SpeechError(Exception):
    """No audio: the words say why (never a key or a URL)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Synthesizer:
    """Speech is accounted like a model call: a usage record for the client's gateway per synthesis (model:
    the source's; input tokens estimated as characters / 4, as /audio/speech reports no usage) and per
    summary call, and the `botline_speech_*` metrics."""

    def __init__(self, store: Store, clients: ClientPool, settings: SpeechSettings, *,
                 upstreams: Upstreams, usage: UsageRecorder, metrics: Metrics, clock: Clock) -> None:
        self._store = store
        self._clients = clients
        self._settings = settings
        self._upstreams = upstreams
        self._usage = usage
        self._metrics = metrics
        self._clock = clock
        self.cache = AudioCache(store.blobs, clock, ttl_seconds=settings.cache_seconds)

    async def close(self) -> None:
        await self.cache.close()

    def source_problem(self, name: str) -> str | None:
        """Why a chat client may not name this audioSynthesisSource (None when it may)."""
        if name in ("None", ""):
            return None
        if name not in self._settings.sources:
            known = ", ".join(["None", *sorted(self._settings.sources)])
            return f"{name!r} is not a configured speech source (configured: {known}; see speech.sources)"
        return None

    async def stream(self, client: ChatClient, text: str, audio_format: AudioFormat) -> AudioFlight:
        """The audio for an answer, readable as it arrives (its chunks raise SpeechError when the synthesis
        fails). Shared per (account, source, model, voice, instruction, summary setting, format, text): from
        the synthesis already running on this replica, from the Store (any replica's), or made now."""
        params = client.client_parameters
        source = self._settings.sources.get(params.audio_synthesis_source)  # type: ignore[call-overload]
        if source is None:
            raise SpeechError("speech is not configured for this chat client")
        voice = params.audio_synthesis_voice or source.default_voice
        instruction = (params.audio_synthesis_instruction or "") if source.instructions else ""
        # The account is part of the key: a source without its own endpoint speaks through the tenant's
        # gateway upstream, whose audio another tenant must never be served.
        key = hashlib.sha256("\x00".join((
            client.account_id, params.audio_synthesis_source, source.model, voice, instruction, audio_format.value,
            str(params.summarize_text_before_audio_synthesis), text,
        )).encode()).hexdigest()

        async def make(flight: AudioFlight) -> None:
            await self._make(flight, client, source, voice, instruction, text, audio_format)

        flight, made = await self.cache.open(key, make)
        if not made:
            self._metrics.speech(params.audio_synthesis_source, SpeechOutcome.CACHED)
        return flight

    async def speak(self, client: ChatClient, text: str, audio_format: AudioFormat) -> SpeechAudio:
        """The whole audio for an answer (a channel's voice note); raises SpeechError."""
        flight = await self.stream(client, text, audio_format)
        return SpeechAudio(data=await flight.read())

    async def _make(self, flight: AudioFlight, client: ChatClient, source: SpeechSourceSettings, voice: str,
                    instruction: str, text: str, audio_format: AudioFormat) -> None:
        """Feeds `flight` with the endpoint's audio as its chunks arrive (the openai SDK's streaming response)."""
        gateway = await self._gateway(client)
        spoken = spoken_text(text, max_chars=self._settings.max_input_chars)
        if client.client_parameters.summarize_text_before_audio_synthesis and \
                len(spoken) > self._settings.summarize_over_chars:
            spoken = await self._summary(gateway, text) or spoken
        if not spoken:
            raise SpeechError("the answer has nothing to speak (only code or tables)")
        if source.base_url:
            key = source.api_key.get_secret_value() if source.api_key else None
            upstream = self._clients.get(source.base_url, key, Trust.OPERATOR)
        else:
            target = await self._target(gateway)
            upstream = self._clients.get(target.base_address, target.api_key, target.trust)
        extra = {"instructions": instruction} if instruction else {}
        record = UsageRecord(account_id=client.account_id, gateway_id=gateway.id, model=source.model,
                             input_tokens=approximate(spoken), at=self._clock.now())
        source_name = client.client_parameters.audio_synthesis_source
        try:
            async with upstream.audio.speech.with_streaming_response.create(
                model=source.model, voice=voice, input=spoken, response_format=audio_format.value,
                timeout=self._settings.timeout_seconds, **extra,  # type: ignore[arg-type]
            ) as response:
                async for chunk in response.iter_bytes():
                    if not flight.size:
                        flight.content_type = content_type_of(chunk)
                    if flight.size + len(chunk) > self._settings.max_audio_bytes:
                        raise SpeechError(f"the audio is larger than speech.max_audio_bytes "
                                          f"({self._settings.max_audio_bytes} bytes)")
                    flight.feed(chunk)
        except openai.OpenAIError as exc:
            log.warning("speech failed at %s: %s", "the speech source" if source.base_url else f"gateway {gateway.id}",
                        type(exc).__name__)
            status = getattr(exc, "status_code", None)
            self._account(record, source_name)
            raise SpeechError(f"the speech endpoint failed ({status or type(exc).__name__})") from None
        except SpeechError:
            self._account(record, source_name)
            raise
        if not flight.size:
            self._account(record, source_name)
            raise SpeechError("the speech endpoint answered with no audio")
        self._account(record, source_name, characters=len(spoken))

    def _account(self, record: UsageRecord, source: str, *, characters: int = 0) -> None:
        """One synthesis: `characters` spoken, or 0 when it failed (then no tokens are counted, as for a
        failed model call)."""
        record.error = not characters
        if record.error:
            record.input_tokens = 0
        self._usage.add(record)
        outcome = SpeechOutcome.SYNTHESIZED if characters else SpeechOutcome.FAILED
        self._metrics.speech(source, outcome, characters=characters)

    async def _gateway(self, client: ChatClient) -> Gateway:
        gateway = None
        if client.ai_gateway_id:
            gateway = await self._store.gateways.get(client.account_id, client.ai_gateway_id)
        if gateway is None:
            raise SpeechError("the chat client has no gateway")
        return gateway

    async def _target(self, gateway: Gateway) -> Upstream:
        try:
            return await self._upstreams.of(gateway)
        except GatewayError as exc:
            raise SpeechError(exc.message) from None

    async def _summary(self, gateway: Gateway, text: str) -> str | None:
        """A short spoken version by a cheap model call; None (speak the prepared text) when it fails."""
        target = await self._target(gateway)
        upstream = self._clients.get(target.base_address, target.api_key, target.trust)
        limit = self._settings.max_input_chars
        model = self._settings.summary_model or gateway.parameters.model_name
        record = UsageRecord(account_id=gateway.account_id, gateway_id=gateway.id, model=model, at=self._clock.now())
        try:
            completion = await upstream.chat.completions.create(
                model=model,
                messages=[{"role": "system", "content": SUMMARY_PROMPT.format(words=SUMMARY_WORDS)},
                          {"role": "user", "content": text[: limit * 8]}],
                max_tokens=SUMMARY_MAX_TOKENS, timeout=self._settings.timeout_seconds,
            )
        except openai.OpenAIError as exc:
            log.warning("speech summary failed at gateway %s: %s", gateway.id, type(exc).__name__)
            record.error = True
            self._usage.add(record)
            return None
        content = completion.choices[0].message.content if completion.choices else None
        usage = completion.usage
        record.input_tokens = usage.prompt_tokens if usage else approximate(text[: limit * 8])
        record.output_tokens = usage.completion_tokens if usage else approximate(content or "")
        self._usage.add(record)
        summary = spoken_text(content or "", max_chars=limit)
        return cut_at_sentence(summary, limit) or None
