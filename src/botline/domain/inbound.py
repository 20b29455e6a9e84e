"""Messages received from a messaging channel, recorded before they are acknowledged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from botline.domain.base import CamelModel, new_id, utcnow
from botline.domain.handoff import Controller
from botline.domain.integrations import IntegrationType


class MediaKind(StrEnum):
    IMAGE = "image"
    AUDIO = "audio"
    DOCUMENT = "document"


class MediaRef(CamelModel):
    """Where to fetch an attachment from: a provider file id (Telegram) or a URL / inline base64."""

    kind: MediaKind
    file_id: str | None = None
    url: str | None = None
    data_base64: str | None = None
    mime_type: str | None = None
    filename: str | None = None


@dataclass(frozen=True)
class ChatKey:
    """One conversation on one channel: what ordering, debounce and sessions are per."""

    account_id: str
    chat_client_id: str
    integration: IntegrationType
    chat_id: str

    @property
    def external_user_id(self) -> str:
        return f"{self.integration.value}:{self.chat_id}"

    def text(self) -> str:
        return f"{self.account_id}/{self.chat_client_id}/{self.integration.value}/{self.chat_id}"


class InboundRecord(CamelModel):
    id: str = Field(default_factory=new_id)
    account_id: str
    chat_client_id: str
    integration: IntegrationType
    chat_id: str
    provider_message_id: str
    sender_name: str | None = None
    text: str = ""
    media: list[MediaRef] = Field(default_factory=list)
    voice: bool = False
    """The user spoke this message (a voice note or audio, even one the provider transcribed)."""
    received_at: datetime = Field(default_factory=utcnow)
    operator: bool = False
    """Typed by a person on the business's own number (not sent by botline): docs/handoff.md."""
    owner: Controller | None = None
    """Who the provider says answers the chat at this message (Chatwoot: a `pending` conversation is the
    bot's, any other a person's); None where the provider has no such notion."""

    @property
    def chat(self) -> ChatKey:
        return ChatKey(self.account_id, self.chat_client_id, self.integration, self.chat_id)

    @property
    def dedupe_key(self) -> str:
        return f"{self.chat_client_id}/{self.integration.value}/{self.provider_message_id}"
