"""Accounts (tenants) and their API keys."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field

from botline.domain.base import CamelModel, new_id, utcnow
from botline.domain.limits import Email, Items, Name


class Plan(StrEnum):
    FREE = "Free"
    PRO = "Pro"
    MAX = "Max"


class LowBalanceNotification(CamelModel):
    enabled: bool = False
    threshold: float = 0.0


class DeprecatedModelsNotification(CamelModel):
    enabled: bool = False


class Notifications(CamelModel):
    emails: Items[Email] = Field(default_factory=list)
    low_balance: LowBalanceNotification = Field(default_factory=LowBalanceNotification)
    deprecated_models: DeprecatedModelsNotification = Field(default_factory=DeprecatedModelsNotification)


class AccountParameters(CamelModel):
    allow_conversations_logging: bool = True
    automatic_json_healing: bool = False
    notifications: Notifications = Field(default_factory=Notifications)


class Account(CamelModel):
    """A tenant. Everything else (keys, gateways, clients, sessions) belongs to one."""

    id: str = Field(default_factory=new_id)
    name: str
    email: str = ""
    plan: Plan = Plan.FREE
    is_admin: bool = False
    disabled: bool = False
    parameters: AccountParameters = Field(default_factory=AccountParameters)
    salt: str
    balance: float | None = None
    """None while billing is off: the balance is unlimited."""
    created_at: datetime = Field(default_factory=utcnow)


class KeyScope(CamelModel):
    """What a scoped key may use (docs/governance.md, "Scoped keys"). A scoped key reaches only
    /v1 (inference) and minting narrower keys; unknown fields are refused, so a limit botline does not
    enforce is never accepted silently."""

    model_config = ConfigDict(extra="forbid")

    gateways: Items[Name] | None = None
    """Gateway ids the key may run turns on; None: every gateway of the account."""
    requests_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)
    """Requests of this key per minute (fixed window, shared by every replica); past it, 429 + Retry-After."""

    def allows_gateway(self, gateway_id: str) -> bool:
        return self.gateways is None or gateway_id in self.gateways

    def within(self, wider: KeyScope | None) -> KeyScope:
        """This scope bounded by the key that mints it: what it leaves open is the wider key's limit;
        raises ValueError (naming the field) when it asks for more than the wider key has."""
        if wider is None:
            return self
        gateways = self.gateways if self.gateways is not None else wider.gateways
        if wider.gateways is not None and gateways is not None and not set(gateways) <= set(wider.gateways):
            raise ValueError("scope.gateways: a key cannot grant gateways the key creating it may not use")
        rate = self.requests_per_minute or wider.requests_per_minute
        if wider.requests_per_minute is not None and rate is not None and rate > wider.requests_per_minute:
            raise ValueError("scope.requestsPerMinute: more than the key creating it may make")
        return KeyScope(gateways=gateways, requests_per_minute=rate)


class ApiKey(CamelModel):
    """A stored API key: only the SHA-256 of the secret and its last characters are kept."""

    id: str = Field(default_factory=new_id)
    account_id: str
    label: str = ""
    key_hash: str
    key_tail: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    used_at: datetime | None = None
    scope: KeyScope | None = None
    """None: the whole account (every route, every gateway, no rate of its own)."""

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now
