"""Speech through an OpenAI-compatible POST /audio/speech, with the openai SDK (over the egress layer).

`audioSynthesisSource` names a configured source (`speech.sources`): its model, and either its own
endpoint (`base_url`, `api_key`: the operator's) or the chat client's gateway upstream, as
transcription uses. Voice and instruction come from the client. The answer is made speakable
(speech/text.py), shortened by a cheap model call when the client asks for it, and the audio body is
read up to `speech.max_audio_bytes`.
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
from botline.speech.cache import AudioCache
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


CONTENT_TYPES = {AudioFormat.MP3: "audio/mpeg", AudioFormat.OPUS: "audio/ogg"}
OGG_MAGIC = b"OggS"


@dataclass(frozen=True)
class SpeechAudio:
    data: bytes
    format: AudioFormat
    text: str
    """What was spoken (after preparation and any summary)."""

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def is_ogg(self) -> bool:
        """An endpoint asked for Opus may still answer otherwise (a server ignoring response_format)."""
        return self.data.startswith(OGG_MAGIC)


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
        self.cache: AudioCache[SpeechAudio] = AudioCache(settings.cache_bytes, lambda audio: len(audio.data))

    def source_problem(self, name: str) -> str | None:
        """Why a chat client may not name this audioSynthesisSource (None when it may)."""
        if name in ("None", ""):
            return None
        if name not in self._settings.sources:
            known = ", ".join(["None", *sorted(self._settings.sources)])
            return f"{name!r} is not a configured speech source (configured: {known}; see speech.sources)"
        return None

    async def speak(self, client: ChatClient, text: str, audio_format: AudioFormat) -> SpeechAudio:
        """The audio for an answer; raises SpeechError. Cached per (source, voice, instruction, summary
        setting, format, text)."""
        params = client.client_parameters
        source = self._settings.sources.get(params.audio_synthesis_source)  # type: ignore[call-overload]
        if source is None:
            raise SpeechError("speech is not configured for this chat client")
        voice = params.audio_synthesis_voice or source.default_voice
        instruction = (params.audio_synthesis_instruction or "") if source.instructions else ""
        key = hashlib.sha256("\x00".join((
            params.audio_synthesis_source, source.model, voice, instruction, audio_format.value,
            str(params.summarize_text_before_audio_synthesis), text,
        )).encode()).hexdigest()
        made = False

        async def make() -> SpeechAudio:
            nonlocal made
            made = True
            return await self._make(client, source, voice, instruction, text, audio_format)

        audio = await self.cache.get_or_make(key, make)
        if not made:
            self._metrics.speech(params.audio_synthesis_source, SpeechOutcome.CACHED)
        return audio

    async def _make(self, client: ChatClient, source: SpeechSourceSettings, voice: str, instruction: str,
                    text: str, audio_format: AudioFormat) -> SpeechAudio:
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
                data = bytearray()
                async for chunk in response.iter_bytes():
                    data.extend(chunk)
                    if len(data) > self._settings.max_audio_bytes:
                        raise SpeechError(f"the audio is larger than speech.max_audio_bytes "
                                          f"({self._settings.max_audio_bytes} bytes)")
        except openai.OpenAIError as exc:
            log.warning("speech failed at %s: %s", "the speech source" if source.base_url else f"gateway {gateway.id}",
                        type(exc).__name__)
            status = getattr(exc, "status_code", None)
            self._account(record, source_name)
            raise SpeechError(f"the speech endpoint failed ({status or type(exc).__name__})") from None
        except SpeechError:
            self._account(record, source_name)
            raise
        if not data:
            self._account(record, source_name)
            raise SpeechError("the speech endpoint answered with no audio")
        self._account(record, source_name, characters=len(spoken))
        return SpeechAudio(data=bytes(data), format=audio_format, text=spoken)

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
