"""User uploads in OpenAI content-part form, checked and turned into what the model can read.

- Image: `{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}` kept as an image part.
- Document: `{"type": "file", "file": {"filename", "file_data": "data:<mime>;base64,..."}}` becomes text
  (plain, markdown, CSV, JSON; PDF in a parsing worker process, botline.parsing) with a short attachment note,
  cut at the parsing character cap.
- Audio: `{"type": "input_audio", "input_audio": {"data": <base64>, "format": "wav"}}` is transcribed through
  the gateway's /audio/transcriptions; when that fails the model gets an attachment note instead.
Each kind needs its input mode on the chat client; other files are refused unless uploadUnsupportedFiles.
A gateway that does not take audio or documents (`ModelInputs`, gateway/multimodal.py) gets a notice in
their place, and nothing is transcribed or parsed for it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from botline.domain.chat_clients import ChatClient, InputMode
from botline.gateway.multimodal import ModelInputs, attachment_note
from botline.gateway.transcription import Transcriber as GatewayTranscriber
from botline.parsing import JobRejected, JobTimedOut, ParsingError, PdfExtractor, PoolBusy

log = logging.getLogger(__name__)

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
TEXT_DOCUMENT_TYPES = frozenset({"text/plain", "text/markdown", "text/csv", "application/json"})
PDF_TYPE = "application/pdf"
AUDIO_FORMATS = frozenset({"wav", "mp3", "webm", "ogg", "m4a", "mp4", "mpeg", "flac"})
UTF8_MAX_BYTES = 4
_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]{1,127}/[\w.+-]{1,127})(?:;[\w=.-]{1,127}){0,8};base64,(?P<data>.*)$", re.DOTALL)
"""Bounded before `data`: a URL that is not one is refused within its first ~2 KB, however long it is
(127 is RFC 6838's limit on type and subtype names)."""

Transcriber = Callable[[bytes, str], Awaitable[str | None]]
Content = str | list[dict[str, Any]]


class AttachmentError(Exception):
    """The upload is refused; `status` is 400, 413 or 415."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class AttachmentPolicy:
    input_modes: frozenset[InputMode]
    upload_unsupported_files: bool
    max_bytes: int
    max_chars: int
    """Text kept from one document."""


def _decode(data: str, max_bytes: int, what: str) -> bytes:
    if len(data) * 3 // 4 > max_bytes:
        raise AttachmentError(413, f"The {what} is larger than the {max_bytes // (1024 * 1024)} MB upload limit.")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AttachmentError(400, f"The {what} is not valid base64.") from exc


def _data_url(url: str, what: str) -> tuple[str, str]:
    match = _DATA_URL.match(url)
    if match is None:
        raise AttachmentError(400, f"The {what} must be a base64 data: URL.")
    return match["mime"].lower(), match["data"]


def _refusal(exc: ParsingError) -> AttachmentError:
    """What the sender is told when a document yields no text (the messages name no internals)."""
    if isinstance(exc, JobRejected):
        return AttachmentError(400, exc.message)
    if isinstance(exc, JobTimedOut):
        return AttachmentError(422, "The document could not be read in time. Try a shorter or simpler file.")
    if isinstance(exc, PoolBusy):
        return AttachmentError(503, exc.message)
    return AttachmentError(422, "The document could not be read. Try another file.")


class AttachmentReader:
    def __init__(self, policy: AttachmentPolicy, transcribe: Transcriber, documents: PdfExtractor) -> None:
        self._policy = policy
        self._transcribe = transcribe
        self._documents = documents

    def _require(self, mode: InputMode) -> None:
        if mode not in self._policy.input_modes:
            raise AttachmentError(415, f"This chat does not accept {mode.value.lower()} uploads.")

    async def read(self, content: Content, inputs: ModelInputs) -> Content:
        """Checks every part and returns the content to store and send to the model (which takes `inputs`)."""
        if isinstance(content, str):
            return content
        parts = [await self._part(part, inputs) for part in content]
        if not parts:
            raise AttachmentError(400, "The prompt is empty.")
        return parts

    async def _part(self, part: dict[str, Any], inputs: ModelInputs) -> dict[str, Any]:
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            return {"type": "text", "text": part["text"]}
        if kind == "image_url":
            return self._image(part)
        if kind == "file":
            return await self._document(part.get("file") or {}, inputs)
        if kind == "input_audio":
            return await self._audio(part.get("input_audio") or {}, inputs)
        raise AttachmentError(400, f"Unknown content part type {kind!r}.")

    def _image(self, part: dict[str, Any]) -> dict[str, Any]:
        self._require(InputMode.IMAGE)
        url = str((part.get("image_url") or {}).get("url", ""))
        mime, data = _data_url(url, "image")
        if mime not in IMAGE_TYPES:
            raise AttachmentError(415, f"Images must be PNG, JPEG, GIF or WebP, not {mime}.")
        _decode(data, self._policy.max_bytes, "image")
        return {"type": "image_url", "image_url": {"url": url}}

    async def _document(self, file: dict[str, Any], inputs: ModelInputs) -> dict[str, Any]:
        name = str(file.get("filename") or "document")
        mime, data = _data_url(str(file.get("file_data", "")), "document")
        blob = _decode(data, self._policy.max_bytes, "document")
        readable = mime in TEXT_DOCUMENT_TYPES or mime == PDF_TYPE
        if readable and InputMode.DOCUMENT in self._policy.input_modes:
            if not inputs.documents:
                return {"type": "text", "text": attachment_note(
                    name, mime, len(blob), "was uploaded; this assistant does not read documents")}
            text, truncated = await self._text(mime, blob)
            detail = "follows (shortened)" if truncated else "follows"
            return {"type": "text", "text": f"{attachment_note(name, mime, len(blob), detail)}\n{text}"}
        if self._policy.upload_unsupported_files:
            return {"type": "text",
                    "text": attachment_note(name, mime, len(blob), "was uploaded; its content cannot be read")}
        self._require(InputMode.DOCUMENT)
        raise AttachmentError(415, f"Files of type {mime} are not accepted here.")

    async def _text(self, mime: str, blob: bytes) -> tuple[str, bool]:
        """The document's text (at most max_chars) and whether it was cut; PDFs go to a worker process."""
        limit = self._policy.max_chars
        if mime != PDF_TYPE:
            text = blob[: limit * UTF8_MAX_BYTES].decode("utf-8", errors="replace")
            return text[:limit], len(text) > limit or len(blob) > limit * UTF8_MAX_BYTES
        if len(blob) > self._documents.max_input_bytes:
            raise AttachmentError(413, "The PDF is too large to read.")
        try:
            extracted = await self._documents.extract(blob)
        except ParsingError as exc:
            raise _refusal(exc) from exc
        return extracted.text, extracted.truncated

    async def _audio(self, audio: dict[str, Any], inputs: ModelInputs) -> dict[str, Any]:
        self._require(InputMode.AUDIO)
        audio_format = str(audio.get("format", "")).lower()
        if audio_format not in AUDIO_FORMATS:
            raise AttachmentError(415, f"Audio must be one of {', '.join(sorted(AUDIO_FORMATS))}.")
        blob = _decode(str(audio.get("data", "")), self._policy.max_bytes, "audio")
        if not inputs.audio:
            return {"type": "text", "text": attachment_note(
                f"voice.{audio_format}", f"audio/{audio_format}", len(blob),
                "is a voice message; this assistant does not take audio")}
        transcript = await self._transcribe(blob, f"voice.{audio_format}")
        if transcript:
            return {"type": "text", "text": f"{VOICE_TRANSCRIPT}\n{transcript}"}
        return {"type": "text", "text": attachment_note(f"voice.{audio_format}", f"audio/{audio_format}", len(blob),
                                              "is a voice message that could not be transcribed")}


VOICE_TRANSCRIPT = "[Voice message transcript]"


def is_spoken(content: Any) -> bool:
    """Whether a user message (as sent, or as stored after reading) carries a voice message."""
    if not isinstance(content, list):
        return False
    return any(isinstance(part, dict) and (
        part.get("type") == "input_audio"
        or (part.get("type") == "text" and str(part.get("text", "")).startswith(VOICE_TRANSCRIPT))
    ) for part in content)


def reader_for(
    client: ChatClient, transcriber: GatewayTranscriber, documents: PdfExtractor, *, max_upload_bytes: int
) -> AttachmentReader:
    """The reader a chat client's settings call for, transcribing through the client's gateway."""
    params = client.client_parameters

    async def transcribe(blob: bytes, filename: str) -> str | None:
        return await transcriber.transcribe(client, blob, filename)

    policy = AttachmentPolicy(
        input_modes=frozenset(params.input_modes), upload_unsupported_files=params.upload_unsupported_files,
        max_bytes=max_upload_bytes, max_chars=documents.limits.max_chars,
    )
    return AttachmentReader(policy, transcribe, documents)
