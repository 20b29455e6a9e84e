"""What kinds of input reach the model: the gateway's `enabledMultimodalFeatures` and `DisableMultiModalInput`.

- `enabledMultimodalFeatures` empty (the default) or holding `All`: images, audio and documents all reach
  the model. Otherwise only the kinds listed: `Image` (image parts), `Audio` (voice messages, transcribed
  to text; a /v1 caller's `input_audio` parts), `File` (documents read to text; a /v1 caller's `file`
  parts). `Video` and `OtherFiles` are accepted: botline reads no video, and files it cannot read are
  always a notice.
- `DisableMultiModalInput` (the model takes text only): image, `input_audio` and `file` parts never reach
  it; transcripts and documents read to text still do, as they are text.

What does not reach the model becomes a short attachment notice in the message, so it can say it cannot
see or hear it instead of answering as if nothing had been sent. Uploads are stored as sent: a later
change of the gateway applies to the whole conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botline.domain.gateways import GatewayFlag, GatewayParameters, MultimodalFeature
from botline.gateway.context import ChatMessage

BASE64_BYTES_PER_CHAR = 3 / 4


def attachment_note(name: str, mime: str, size: int, detail: str) -> str:
    """The notice the model (and the chat page, which shows it as a file chip) reads for an attachment."""
    return f"[Attachment: {name} ({mime}, {max(size // 1024, 1)} KB) {detail}]"


@dataclass(frozen=True)
class ModelInputs:
    images: bool = True
    """Image parts reach the model."""
    audio: bool = True
    """Voice messages are transcribed for it."""
    documents: bool = True
    """Documents are read to text for it."""
    raw_parts: bool = True
    """A /v1 caller's own `input_audio` and `file` parts are passed on (when their kind is enabled)."""

    @classmethod
    def of(cls, params: GatewayParameters) -> ModelInputs:
        features = frozenset(params.enabled_multimodal_features)
        every = not features or MultimodalFeature.ALL in features
        text_only = params.has_flag(GatewayFlag.DISABLE_MULTI_MODAL_INPUT)
        return cls(
            images=not text_only and (every or MultimodalFeature.IMAGE in features),
            audio=every or MultimodalFeature.AUDIO in features,
            documents=every or MultimodalFeature.FILE in features,
            raw_parts=not text_only,
        )

    def shape(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """The conversation with every part the model may not take replaced by its notice."""
        if self.images and self.audio and self.documents and self.raw_parts:
            return messages
        return [self._message(message) for message in messages]

    def _message(self, message: ChatMessage) -> ChatMessage:
        content = message.get("content")
        if not isinstance(content, list) or not any(self._refused(part) for part in content):
            return message
        parts = [self._notice(part) if self._refused(part) else part for part in content]
        return {**message, "content": parts}

    def _refused(self, part: Any) -> bool:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            return not self.images
        if kind == "input_audio":
            return not (self.audio and self.raw_parts)
        if kind == "file":
            return not (self.documents and self.raw_parts)
        return False

    @staticmethod
    def _notice(part: dict[str, Any]) -> dict[str, Any]:
        kind = part["type"]
        if kind == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            mime = url[5:url.find(";")] if url.startswith("data:") and ";" in url[:140] else "image"
            text = attachment_note("image", mime, _size(url), "was sent; this assistant cannot see images")
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            audio_format = str(audio.get("format") or "audio")[:16]
            text = attachment_note(f"voice.{audio_format}", f"audio/{audio_format}", _size(str(audio.get("data", ""))),
                                   "was sent; this assistant cannot hear audio")
        else:
            file = part.get("file") or {}
            name = str(file.get("filename") or "document")[:200]
            text = attachment_note(name, "file", _size(str(file.get("file_data", ""))),
                                   "was sent; this assistant cannot read files")
        return {"type": "text", "text": text}


def _size(encoded: str) -> int:
    return int(len(encoded) * BASE64_BYTES_PER_CHAR)
