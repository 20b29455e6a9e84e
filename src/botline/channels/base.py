"""What every channel adapter provides.

Matching is separate from running: `verify` and `parse` are pure and synchronous (authenticity,
then translation and filtering); sending, typing and media fetching are async.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from botline.domain.handoff import Controller
from botline.domain.inbound import MediaRef
from botline.domain.integrations import Integration, IntegrationType
from botline.egress import Trust
from botline.media import OutboundMedia

IntegrationT = TypeVar("IntegrationT", bound=Integration)


def epoch_seconds(value: Any) -> datetime | None:
    """A provider's message time in epoch seconds, a number or a numeric string (Evolution's
    `messageTimestamp`, Meta's `timestamp` through Kapso); None when absent or not a time."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None


@dataclass(frozen=True)
class InboundMessage:
    provider_message_id: str
    chat_id: str
    text: str = ""
    sender_name: str | None = None
    media: tuple[MediaRef, ...] = ()
    timestamp: datetime | None = None
    voice: bool = False
    """A voice message the provider already turned into `text` (Kapso's transcript); audio in `media`
    counts as spoken anyway."""
    operator: bool = False
    """Sent from the business's own number by a person (typed on the phone or the Business app), not
    through the provider's API by botline: it hands the chat to that person (docs/handoff.md)."""
    owner: Controller | None = None
    """Who the provider says answers the chat (Chatwoot's conversation status); None: botline decides."""


@dataclass(frozen=True)
class OwnerChange:
    """A provider event that changes who answers a chat without a message (Chatwoot's conversation
    opened, resolved or status changed): mirrored in the session's handoff state."""

    chat_id: str
    owner: Controller


@dataclass(frozen=True)
class ParsedWebhook:
    """The messages to answer, and how many events were ignored (echoes, statuses, groups...)."""

    messages: list[InboundMessage] = field(default_factory=list)
    ignored: int = 0
    owners: list[OwnerChange] = field(default_factory=list)


class WebhookRejected(Exception):
    """The webhook is not authentic or not for this integration: nothing is processed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DeliveryError(Exception):
    """A send failed. `retryable` with an optional `retry_after` (seconds) from the provider."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class VoiceNote:
    """A spoken answer to send: OGG/Opus when `is_ogg` (a voice note everywhere), else a plain audio file."""

    data: bytes
    content_type: str

    @property
    def is_ogg(self) -> bool:
        return self.data.startswith(b"OggS")

    @property
    def filename(self) -> str:
        return "answer.ogg" if self.is_ogg else "answer.mp3"


class ChannelAdapter(ABC, Generic[IntegrationT]):
    kind: IntegrationType
    max_text_length: int
    """Longest text one outbound message may carry, as `text_length` counts it."""

    def text_length(self, text: str) -> int:
        return len(text)

    @abstractmethod
    def verify(self, integration: IntegrationT, headers: Mapping[str, str], body: bytes) -> None:
        """Raises WebhookRejected unless the request is authentic (checked before parsing)."""

    @abstractmethod
    def parse(self, integration: IntegrationT, payload: Any) -> ParsedWebhook:
        """Translates a webhook payload; drops botline's own echoes, status callbacks and unwanted groups,
        and marks messages a person sent from the business's number as `operator`."""

    @abstractmethod
    async def send_text(self, integration: IntegrationT, chat_id: str, text: str, *,
                        trust: Trust = Trust.TENANT) -> None:
        """Sends one message (at most max_text_length); raises DeliveryError. `trust` is the egress trust
        of the account that saved the integration: it matters where the integration names its own
        endpoint (Evolution's endpointUrl); providers whose API base is in the config ignore it."""

    async def send_voice(self, integration: IntegrationT, chat_id: str, voice: VoiceNote, *,
                         trust: Trust = Trust.TENANT) -> None:
        """Sends a spoken answer as a voice note; raises DeliveryError (also where unsupported)."""
        raise DeliveryError(f"{self.kind.value} cannot send voice notes", retryable=False)

    max_image_bytes: int = 0
    """Largest image sent as a photo (0: the channel sends no media)."""
    max_document_bytes: int = 0
    """Largest file sent as a document."""

    def media_limit(self, media: OutboundMedia) -> int:
        return self.max_image_bytes if media.is_image else self.max_document_bytes

    async def send_media(self, integration: IntegrationT, chat_id: str, media: OutboundMedia, *,
                         trust: Trust = Trust.TENANT) -> None:
        """Sends an image as a photo, anything else as a document (within media_limit); raises DeliveryError."""
        raise DeliveryError(f"{self.kind.value} cannot send files yet", retryable=False)

    async def typing(self, integration: IntegrationT, chat_id: str, *, trust: Trust = Trust.TENANT) -> None:
        """Shows "typing..." where the provider supports it (best effort)."""

    async def fetch_media(self, integration: IntegrationT, media: MediaRef) -> bytes | None:
        """The bytes of an attachment, or None when they cannot be fetched."""
        return None

    async def set_owner(self, integration: IntegrationT, chat_id: str, owner: Controller, *,
                        trust: Trust = Trust.TENANT) -> None:
        """Tells a provider with its own notion of who answers a chat (Chatwoot's conversation status) that
        a person took it or the bot has it back; raises DeliveryError. Nothing elsewhere."""

    can_register_webhook: bool = False
    """True when the provider has an API to set the webhook URL (Telegram, Evolution)."""

    async def register_webhook(self, integration: IntegrationT, url: str, *, trust: Trust = Trust.TENANT) -> None:
        """Points the provider at our webhook URL; raises DeliveryError."""

    async def fetch_updates(self, integration: IntegrationT, offset: int | None) -> list[dict[str, Any]]:
        """Long polling (Telegram only): the next raw updates, confirming those before `offset`."""
        raise DeliveryError(f"{self.kind.value} does not support polling", retryable=False)

    async def close(self) -> None:
        """Releases provider clients."""
