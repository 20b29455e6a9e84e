"""Spoken answers on messaging channels: after the text (or instead of it), a voice note.

Who is spoken to: the client's audioSynthesisTrigger, by default only a user whose own message was a
voice note (docs/channels.md, "Voice notes"). The text is never lost to a synthesis failure: with the
text on (the default) it has already gone out; voice-only clients get the text when no voice note
could be made or sent.
"""

from __future__ import annotations

import logging
from typing import Any

from botline.channels.base import ChannelAdapter, DeliveryError, VoiceNote
from botline.domain.chat_clients import ChatClient, SpeechTrigger
from botline.domain.inbound import InboundRecord, MediaKind
from botline.domain.integrations import Integration
from botline.egress import Trust
from botline.engine.delivery import with_retries
from botline.speech import AudioFormat, SpeechError, Synthesizer

log = logging.getLogger(__name__)

CHANNEL_DEFAULT = SpeechTrigger.VOICE_MESSAGES


def user_spoke(records: list[InboundRecord]) -> bool:
    return any(r.voice or any(m.kind is MediaKind.AUDIO for m in r.media) for r in records)


class VoiceReplies:
    def __init__(self, speech: Synthesizer) -> None:
        self._speech = speech

    @staticmethod
    def wanted(client: ChatClient, records: list[InboundRecord]) -> bool:
        return client.client_parameters.speaks_after(user_spoke=user_spoke(records), channel_default=CHANNEL_DEFAULT)

    async def send(self, adapter: ChannelAdapter[Any], integration: Integration, chat_id: str, client: ChatClient,
                   text: str, trust: Trust) -> bool:
        """Synthesises (Ogg/Opus) and sends `text` as a voice note; False, logged, when either fails."""
        try:
            audio = await self._speech.speak(client, text, AudioFormat.OPUS)
        except SpeechError as exc:
            log.warning("no voice note for %s: %s", chat_id, exc.message)
            return False
        note = VoiceNote(data=audio.data, content_type=audio.content_type)
        try:
            await with_retries(adapter.kind.value,
                               lambda: adapter.send_voice(integration, chat_id, note, trust=trust))
        except DeliveryError as exc:
            log.warning("voice note to %s not delivered: %s", chat_id, exc.message)
            return False
        return True
