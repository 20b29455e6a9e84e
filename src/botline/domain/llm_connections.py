"""LLM connections (Flashback "AI LLMs"): a provider's endpoint and credentials, saved once per account.

A gateway that names one in `llmConnectionId` reaches its model through the connection's endpoint and
credential, so rotating a key is one edit. Every provider is reached through its OpenAI-compatible
endpoint (docs/governance.md, "Providers"); `key` and `secret` are never returned nor logged.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from botline.domain.base import CamelModel, new_id, utcnow
from botline.domain.limits import Name, Secret, Url


class AiType(StrEnum):
    OPENAI = "OPENAI"
    GOOGLE = "GOOGLE"
    ANTHROPIC = "ANTHROPIC"
    AWS = "AWS"
    OTHER = "OTHER"


DEFAULT_ENDPOINTS: dict[AiType, str] = {
    AiType.OPENAI: "https://api.openai.com/v1",
    AiType.GOOGLE: "https://generativelanguage.googleapis.com/v1beta/openai",
    AiType.ANTHROPIC: "https://api.anthropic.com/v1",
    AiType.AWS: "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1",
}
"""Each provider's OpenAI-compatible base URL, used when a connection gives no endpoint (OTHER must)."""


def valid_endpoint(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value.startswith(("http://", "https://")) or len(value) < len("http://x"):
        raise ValueError("must be an absolute http(s) URL")
    return value.rstrip("/")


class LlmConnection(CamelModel):
    """A stored connection. `secret` is the credential sent as the Bearer token (`key` when no secret
    is given: Flashback's form has both, an access key and a secret; OpenAI-compatible APIs take one)."""

    id: str = Field(default_factory=new_id)
    account_id: str
    name: str
    ai_type: AiType
    endpoint: str
    key: str | None = None
    secret: str | None = None
    validated_at: datetime | None = None
    """When the last `/validate` succeeded; None when it never did or the last one failed."""
    validation_error: str | None = None
    """The provider's answer to the last failed `/validate`."""
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def credential(self) -> str | None:
        return self.secret or self.key

    @property
    def available(self) -> bool:
        """Validated and still valid: the last validation succeeded (an edit of the endpoint or a
        credential clears it)."""
        return self.validated_at is not None

    def view(self) -> dict[str, Any]:
        """Flashback's AiLlmDTO; secrets always null. Botline has no org/workspace/user: the account
        stands for all three (docs/governance.md)."""
        return {
            "id": self.id, "orgId": self.account_id, "workspaceId": self.account_id, "userId": self.account_id,
            "name": self.name, "aiType": self.ai_type.value, "endpoint": self.endpoint, "key": None,
            "secret": None, "available": self.available,
            "validatedAt": None if self.validated_at is None else self.wire()["validatedAt"],
            "createdAt": self.wire()["createdAt"],
        }


class LlmConnectionBody(CamelModel):
    """POST /api/v1/ai/llm (Flashback's CreateAiLlmRequest; `workspaceId` and `apiKeyUuid` accepted and
    ignored: an account is botline's one scope)."""

    name: Name = Field(min_length=1)
    ai_type: AiType
    endpoint: Url | None = None
    key: Secret | None = None
    secret: Secret | None = None
    workspace_id: Name | None = None
    api_key_uuid: Name | None = None

    @field_validator("endpoint")
    @classmethod
    def _valid_endpoint(cls, value: str | None) -> str | None:
        return valid_endpoint(value)


class LlmConnectionPatch(CamelModel):
    """PUT /api/v1/ai/llm/{id} (UpdateAiLlmRequest): given fields replace the stored ones."""

    name: Name | None = Field(default=None, min_length=1)
    ai_type: AiType | None = None
    endpoint: Url | None = None
    key: Secret | None = None
    secret: Secret | None = None
    api_key_uuid: Name | None = None

    @field_validator("endpoint")
    @classmethod
    def _valid_endpoint(cls, value: str | None) -> str | None:
        return valid_endpoint(value)


class ConnectionStats(CamelModel):
    """Counters of one connection (Flashback's stats; the API writes them as strings like Flashback)."""

    api_calls: int = 0
    tokens_in: int = 0
    """Every call made on the connection: the gateway's model calls and governance calls (judge,
    moderation, routing classifier) that used it."""
    tokens_out: int = 0
    llm_tokens_in: int = 0
    """The gateway's own model calls only."""
    llm_tokens_out: int = 0
    policy_tokens_in: int = 0
    """Governance calls only (judge, moderation, routing classifier)."""
    policy_tokens_out: int = 0
    policy_violations: int = 0
    alerts: int = 0
    blocks: int = 0

    def __add__(self, other: ConnectionStats) -> ConnectionStats:
        return ConnectionStats(**{name: getattr(self, name) + getattr(other, name) for name in STAT_FIELDS})


STAT_FIELDS = tuple(ConnectionStats.model_fields)
