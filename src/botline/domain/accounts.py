"""Accounts (tenants) and their API keys."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from botline.domain.base import CamelModel, new_id, utcnow
from botline.domain.limits import Email, Items


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

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now
