"""Messaging integrations of a chat client (seed "Edit Web Chat Client Integrations").

Secrets (tokens, API keys, webhook secrets) are stored here and never returned: `masked()` replaces
them, and a PUT that sends the mask back keeps the stored value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, field_validator

from botline.domain.base import CamelModel
from botline.domain.limits import Name, Secret, Url
from botline.domain.secrets import MASK, SecretNeeded, same_destination
from botline.domain.timespan import Timespan

SECRET_MASK = MASK
DEFAULT_SESSION_DURATION = timedelta(hours=3)
WEBHOOK_TOKEN_LENGTH = 32


class IntegrationType(StrEnum):
    ZAPI = "Zapi"
    TELEGRAM = "Telegram"
    EVOLUTION = "EvolutionApi"
    KAPSO = "Kapso"
    CHATWOOT = "Chatwoot"


class GroupPolicy(StrEnum):
    IGNORE = "Ignore"
    MENTIONED = "Mentioned"
    """Answer in groups only when the bot is mentioned or replied to (Telegram)."""
    ALL = "All"


class _Integration(CamelModel):
    model_config = ConfigDict(extra="forbid")

    session_duration: Timespan = DEFAULT_SESSION_DURATION
    group_policy: GroupPolicy = GroupPolicy.IGNORE

    secret_fields: ClassVar[tuple[str, ...]] = ()
    destination_field: ClassVar[str | None] = None
    """The tenant-chosen URL the secrets are sent to, where there is one (docs: domain/secrets.py)."""

    @field_validator("session_duration")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta:
        if not value or value.total_seconds() < 60:
            raise ValueError("must be at least one minute")
        return value


class ZapiIntegration(_Integration):
    instance_id: Name = Field(min_length=1)
    instance_token: Secret = Field(min_length=1)
    client_token: Secret | None = None

    secret_fields: ClassVar[tuple[str, ...]] = ("instance_token", "client_token")


class TelegramIntegration(_Integration):
    bot_token: Secret = Field(min_length=1)
    group_policy: GroupPolicy = GroupPolicy.MENTIONED
    webhook_secret: Secret = Field(default_factory=lambda: secrets.token_urlsafe(32))
    """Given to setWebhook as secret_token; Telegram echoes it in X-Telegram-Bot-Api-Secret-Token."""

    secret_fields: ClassVar[tuple[str, ...]] = ("bot_token", "webhook_secret")


class EvolutionIntegration(_Integration):
    endpoint_url: Url = Field(min_length=1)
    instance_name: Name = Field(min_length=1)
    api_key: Secret = Field(min_length=1)

    secret_fields: ClassVar[tuple[str, ...]] = ("api_key",)
    destination_field: ClassVar[str | None] = "endpoint_url"

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")


class KapsoIntegration(_Integration):
    api_key: Secret = Field(min_length=1)
    phone_number_id: Name = Field(min_length=1)
    webhook_secret_key: Secret | None = None
    continued_messages_template_id: Name | None = None

    secret_fields: ClassVar[tuple[str, ...]] = ("api_key", "webhook_secret_key")


class ChatwootIntegration(_Integration):
    """botline as a Chatwoot Agent Bot (docs/channels.md): Chatwoot posts the bot's webhooks to our URL,
    and botline answers through the account API of the installation at `base_url` with the bot's token."""

    base_url: Url = Field(min_length=1)
    """The Chatwoot installation, e.g. https://app.chatwoot.com (self-hosted: its own address)."""
    account_id: int = Field(ge=1)
    """The Chatwoot account the bot belongs to (the number in /app/accounts/{id}/...)."""
    access_token: Secret = Field(min_length=1)
    """The agent bot's access token (sent as `api_access_token`)."""
    webhook_secret: Secret | None = None
    """The agent bot's secret: Chatwoot 4.13+ signs its webhooks with it (X-Chatwoot-Signature)."""

    secret_fields: ClassVar[tuple[str, ...]] = ("access_token", "webhook_secret")
    destination_field: ClassVar[str | None] = "base_url"

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")


Integration = ZapiIntegration | TelegramIntegration | EvolutionIntegration | KapsoIntegration | ChatwootIntegration

FIELD_OF: dict[IntegrationType, str] = {
    IntegrationType.ZAPI: "zapi_integration",
    IntegrationType.TELEGRAM: "telegram_integration",
    IntegrationType.EVOLUTION: "evolution_integration",
    IntegrationType.KAPSO: "kapso_integration",
    IntegrationType.CHATWOOT: "chatwoot_integration",
}
MODEL_OF: dict[IntegrationType, type[_Integration]] = {
    IntegrationType.ZAPI: ZapiIntegration,
    IntegrationType.TELEGRAM: TelegramIntegration,
    IntegrationType.EVOLUTION: EvolutionIntegration,
    IntegrationType.KAPSO: KapsoIntegration,
    IntegrationType.CHATWOOT: ChatwootIntegration,
}


class Integrations(CamelModel):
    zapi_integration: ZapiIntegration | None = None
    telegram_integration: TelegramIntegration | None = None
    evolution_integration: EvolutionIntegration | None = None
    kapso_integration: KapsoIntegration | None = None
    chatwoot_integration: ChatwootIntegration | None = None

    def of(self, kind: IntegrationType) -> Integration | None:
        value = getattr(self, FIELD_OF[kind])
        return value  # type: ignore[no-any-return]

    def configured(self) -> list[tuple[IntegrationType, Integration]]:
        return [(kind, found) for kind in IntegrationType if (found := self.of(kind)) is not None]


def masked(integration: _Integration) -> dict[str, Any]:
    data = integration.wire()
    for name in integration.secret_fields:
        alias = type(integration).model_fields[name].alias or name
        if data.get(alias):
            data[alias] = SECRET_MASK
    return data


def keep_masked_secrets(given: dict[str, Any], stored: _Integration | None, *, section: str) -> dict[str, Any]:
    """A PUT that sends back "********" (or omits a secret) keeps the stored secret, unless the
    integration's destination (Evolution's endpointUrl) changes: then SecretNeeded."""
    if stored is None:
        return given
    merged = dict(given)
    model = type(stored)
    moved = stored.destination_field is not None and not same_destination(
        getattr(stored, stored.destination_field),
        given.get(model.model_fields[stored.destination_field].alias or stored.destination_field),
    )
    for name in stored.secret_fields:
        alias = model.model_fields[name].alias or name
        if merged.get(alias, SECRET_MASK) == SECRET_MASK:
            if moved and getattr(stored, name):
                destination = model.model_fields[stored.destination_field or ""].alias or stored.destination_field
                raise SecretNeeded(f"integrations.{section}.{alias}", str(destination))
            merged[alias] = getattr(stored, name)
    return merged


def webhook_token(salt: str, chat_client_id: str, kind: IntegrationType) -> str:
    """First 32 chars of base64url(HMAC-SHA256(account salt, "{chatClientId}:{integrationType}"))."""
    digest = hmac.new(salt.encode(), f"{chat_client_id}:{kind.value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:WEBHOOK_TOKEN_LENGTH]
