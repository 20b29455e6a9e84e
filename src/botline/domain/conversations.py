"""Sessions (one conversation with one end user) and the messages in them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from botline.domain.base import CamelModel, new_id, utcnow
from botline.domain.handoff import Handoff


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class MessageStatus(StrEnum):
    COMPLETE = "complete"
    CANCELLED = "cancelled"
    FAILED = "failed"


class Session(CamelModel):
    """A conversation. Its `tag` is the external user id memories and schedules key on."""

    id: str = Field(default_factory=new_id)
    account_id: str
    chat_client_id: str
    access_key: str
    tag: str | None = None
    extra_context: str | None = None
    context_location: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    conversation_token: str = Field(default_factory=new_id)
    """Sent to tools with every call, so a site can tie callbacks to this conversation."""
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    message_count: int = 0
    token_count: int = 0
    last_message_at: datetime | None = None
    last_user_message_at: datetime | None = None
    last_delivery_error: str | None = None
    """Why the last answer could not be delivered on its channel (after retries), if it could not."""
    handoff: Handoff | None = None
    """Who answers: None (never handed over) is the bot; docs/handoff.md."""

    def is_live(self, now: datetime) -> bool:
        return self.expires_at > now


class TokenUsage(CamelModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = Field(default=0, exclude=True)
    """Prompt tokens the provider served from its cache (`prompt_tokens_details.cached_tokens`): reported
    to /v1 callers, not stored with messages."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )


class CitedDocument(CamelModel):
    """A knowledge document the gateway put before the model for an answer (the web chat lists it under
    the answer; /v1 returns it in `knowledge_documents`)."""

    id: str
    name: str
    collection_id: str
    collection_name: str = ""

    def shown(self) -> dict[str, str]:
        """What the web chat shows a person: the names (ids stay with the operator's API)."""
        return {"name": self.name, "collection": self.collection_name}


class Message(CamelModel):
    """One stored message of a session, in OpenAI chat shape plus bookkeeping."""

    id: str = Field(default_factory=new_id)
    session_id: str
    role: Role
    content: str | list[dict[str, Any]] | None = None
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    tool_call_id: str | None = None
    usage: TokenUsage | None = None
    status: MessageStatus = MessageStatus.COMPLETE
    answers_inbound: list[str] = Field(default_factory=list)
    """Channel messages (inbound record ids) this answer replies to: lets a restart re-deliver it."""
    documents: list[CitedDocument] = Field(default_factory=list)
    """On an answer: the knowledge documents its turn retrieved, kept so a reload still shows them."""
    agent: str | None = None
    """Set on an assistant message a person wrote (an operator on the business phone, an agent through
    the API): the model sees it as the business speaking; the transcript shows who."""
    created_at: datetime = Field(default_factory=utcnow)
