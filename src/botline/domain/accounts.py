"""Accounts (tenants) and their API keys."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from botline.domain.base import CamelModel, new_id, utcnow
from botline.domain.limits import Email, Items, Name, Url


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


class InputCheck(StrEnum):
    PARALLEL = "parallel"
    """The input policy check runs beside the model call; the answer is held until it is done."""
    SEQUENTIAL = "sequential"
    """The input policy check runs first; a blocked message never reaches the model."""


class GovernanceParameters(CamelModel):
    """How the account's AI policies are enforced (docs/governance.md, "Account governance settings")."""

    model_config = ConfigDict(extra="forbid")

    alert_webhook_url: Annotated[Url, Field(pattern=r"^https?://")] | None = None
    """Violations of alert- and block-level policies are POSTed here, signed with the account's hook key."""
    judge_connection_id: Name | None = None
    """The account's LLM connection the policy judge runs on; unset: each gateway's own upstream."""
    judge_model: Name | None = None
    """The judge's model; unset: governance.judge_model, else the gateway's modelName."""
    input_check: InputCheck | None = None
    """Unset: governance.input_check."""


class AccountParameters(CamelModel):
    allow_conversations_logging: bool = True
    automatic_json_healing: bool = False
    notifications: Notifications = Field(default_factory=Notifications)
    governance: GovernanceParameters = Field(default_factory=GovernanceParameters)


class UsageLimits(CamelModel):
    """Budgets counted in the Store per UTC day (tokens) and per UTC month (spend, priced by
    batch.prices); past one, turns are refused (docs/governance.md, "Usage limits")."""

    model_config = ConfigDict(extra="forbid")

    tokens_per_day: int | None = Field(default=None, ge=1, le=10**15)
    spend_per_month: float | None = Field(default=None, gt=0, le=10**9)

    @property
    def any(self) -> bool:
        return self.tokens_per_day is not None or self.spend_per_month is not None


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
    limits: UsageLimits | None = None
    """Set by an administrator; None: no budget of the account's own."""
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
    tokens_per_day: int | None = Field(default=None, ge=1, le=10**15)
    """Tokens of this key's turns per UTC day; past it, 429 + Retry-After (the next UTC midnight)."""
    spend_per_month: float | None = Field(default=None, gt=0, le=10**9)
    """Cost of this key's turns per UTC month (batch.prices); past it, 402."""

    @property
    def limits(self) -> UsageLimits | None:
        limits = UsageLimits(tokens_per_day=self.tokens_per_day, spend_per_month=self.spend_per_month)
        return limits if limits.any else None

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
        bounded: dict[str, Any] = {"gateways": gateways}
        for field, wire in (("requests_per_minute", "requestsPerMinute"), ("tokens_per_day", "tokensPerDay"),
                            ("spend_per_month", "spendPerMonth")):
            mine, theirs = getattr(self, field), getattr(wider, field)
            value = mine if mine is not None else theirs
            if theirs is not None and value > theirs:
                raise ValueError(f"scope.{wire}: more than the key creating it may use")
            bounded[field] = value
        return KeyScope(**bounded)


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
