"""Chat clients: how end users reach a gateway (the web chat page, and later Telegram/WhatsApp)."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, field_validator

from botline.domain.base import CamelModel, new_id, utcnow
from botline.domain.handoff import HandoffSettings
from botline.domain.integrations import Integrations
from botline.domain.limits import Document, ImageUrl, Items, LongText, Name, Text
from botline.domain.timespan import Timespan

# Linear-time patterns (docs/decisions.md, "Regexes on hostile input"): no two quantifiers can match
# the same characters, and each field is length-capped before its pattern runs.
_HEX_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")
_FUNCTIONAL_COLOUR = re.compile(r"^(?:rgba?|hsla?)\([-\d.%,\s/a-z]+\)$", re.IGNORECASE)
_NAMED_COLOUR = re.compile(r"^[a-zA-Z]{3,20}$")
_ORIGIN = re.compile(r"^https?://(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+)(?::\d{1,5})?$")
MAX_COLOUR_LENGTH = 64
"""Longer than any CSS colour written by hand ("hsla(360deg 100% 100% / 100%)" is 30)."""
MAX_ORIGIN_LENGTH = 300
"""scheme://, a 253-character host name (or a bracketed IPv6 address) and :port."""
Origin = Annotated[str, Field(max_length=MAX_ORIGIN_LENGTH)]
HostName = Annotated[str, Field(max_length=253)]
_HOST_NAME = re.compile(r"[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})*")
"""Labels separated by dots (linear: the dot ends each label); hyphens at a label's edge are checked apart."""


class InputMode(StrEnum):
    IMAGE = "Image"
    DOCUMENT = "Document"
    AUDIO = "Audio"


class SpeechTrigger(StrEnum):
    """When an answer is spoken (with an audioSynthesisSource set)."""

    ALWAYS = "Always"
    VOICE_MESSAGES = "VoiceMessages"
    """Only answers to a message the user spoke (a voice note, an audio upload)."""


NO_SPEECH_SOURCE = "None"


class SuggestionButton(CamelModel):
    label: Name = Field(min_length=1)
    prompt: Text = Field(min_length=1)


class StrictModel(CamelModel):
    model_config = ConfigDict(extra="forbid")


DEFAULT_MESSAGES_PER_HOUR = 60
"""A person chatting rarely sends more than one message a minute for an hour; a script does."""
DEFAULT_MAX_MESSAGES = 400
"""200 questions and answers: a long support conversation fits, an endless loop on one link does not."""


class LimitingParameters(StrictModel):
    """Omitted fields of a new client take the defaults; an explicit 0 still means no limit, and a stored
    client keeps the values stored with it (every field is written when a client is saved)."""

    messages_per_hour: int = Field(default=DEFAULT_MESSAGES_PER_HOUR, ge=0)
    """User messages a session (its tag, else the session) may send per hour; 0 = no limit."""
    max_messages: int = Field(default=DEFAULT_MAX_MESSAGES, ge=0)
    """Messages (user + assistant) a session may hold; at the cap the chat is blocked. 0 = no limit."""


class ClientParameters(StrictModel):
    language_code: Name | None = None
    suggestion_buttons: Items[SuggestionButton] = Field(default_factory=list)
    custom_scripts: Document | None = None
    custom_styles: Document | None = None
    input_modes: Items[InputMode] = Field(default_factory=list)
    primary_color: str = Field(max_length=MAX_COLOUR_LENGTH)
    page_title: Name = Field(min_length=1)
    hello_label: Text | None = None
    hello_sub_label: Text | None = None
    text_area_placeholder: Text | None = None
    logo_image_url: ImageUrl | None = None
    debug: bool = False
    show_tool_calls: bool = False
    allowed_frame_origins: Items[Origin] = Field(default_factory=list)
    image_hosts: Items[HostName] = Field(default_factory=list)
    """botline's addition: hosts whose markdown images in answers botline fetches and sends as files
    (web chat inline, photos on channels). Empty: images from other hosts are never loaded."""
    audio_synthesis_source: Name = "None"
    audio_synthesis_voice: Name | None = None
    audio_synthesis_instruction: LongText | None = None
    summarize_text_before_audio_synthesis: bool = False
    audio_synthesis_trigger: SpeechTrigger | None = None
    """botline's addition: when to speak. Unset: Always on the web chat, VoiceMessages on channels."""
    audio_synthesis_with_text: bool = True
    """botline's addition, channels: False sends a spoken answer as the voice note alone (the text
    follows only when synthesis fails)."""
    upload_unsupported_files: bool = False
    allow_scheduled_continuations: bool = False
    split_answer_into_message_chunks: bool = False
    max_scheduled_ignored_zone: Timespan = None
    message_debounce_interval: Timespan = None
    timezone: Name | None = None
    """botline's addition: the IANA zone recurring tasks default to (else UTC)."""
    handoff: HandoffSettings = Field(default_factory=HandoffSettings)
    """botline's addition: human handoff (docs/handoff.md)."""

    @field_validator("primary_color")
    @classmethod
    def _css_colour(cls, value: str) -> str:
        value = value.strip()
        if not (_HEX_COLOUR.match(value) or _FUNCTIONAL_COLOUR.match(value) or _NAMED_COLOUR.match(value)):
            raise ValueError("must be a CSS colour such as #6366f1, rgb(99, 102, 241) or indigo")
        return value

    @field_validator("allowed_frame_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _ORIGIN.match(value):
                raise ValueError(f"{value!r} is not an origin (scheme://host[:port], no path)")
        return values

    @field_validator("image_hosts")
    @classmethod
    def _hosts(cls, values: list[str]) -> list[str]:
        hosts = [value.strip().lower() for value in values]
        for host in hosts:
            if not _HOST_NAME.fullmatch(host) or any(label[0] == "-" or label[-1] == "-" for label in host.split(".")):
                raise ValueError(f"{host!r} is not a host name (such as cdn.example.com: no scheme, port or path)")
        return hosts

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError("must be an IANA time zone such as America/Sao_Paulo") from None
        return value or None

    @field_validator("logo_image_url")
    @classmethod
    def _logo(cls, value: str | None) -> str | None:
        if value and not value.startswith(("https://", "http://", "data:image/", "/")):
            raise ValueError("must be an http(s) URL, a data:image URL or a path")
        return value or None


    @property
    def speaks(self) -> bool:
        return self.audio_synthesis_source not in (NO_SPEECH_SOURCE, "")

    def speaks_after(self, *, user_spoke: bool, channel_default: SpeechTrigger) -> bool:
        """Whether an answer is spoken, given whether the message it answers was a voice message."""
        trigger = self.audio_synthesis_trigger or channel_default
        return self.speaks and (trigger is SpeechTrigger.ALWAYS or user_spoke)


class ChatClient(CamelModel):
    id: str = Field(default_factory=new_id)
    account_id: str
    name: str
    ai_gateway_id: str | None = None
    limiting_parameters: LimitingParameters = Field(default_factory=LimitingParameters)
    client_parameters: ClientParameters
    integrations: Integrations = Field(default_factory=Integrations)
    created_at: datetime = Field(default_factory=utcnow)
